"""Notify targets: where a project's notifications go (`forgeline notify add`).

A target is one record on the compacted ``control.notify`` topic, keyed by its id; the latest
record of a key wins and ``removed`` is a tombstone. Non-secret settings (repository, URL…)
are stored as they are; the provider secret (token, webhook signing secret, Discord webhook
URL — whose path *is* its credential) only as a Fernet token (see ``crypto``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal
from urllib.parse import urlparse

import orjson

Provider = Literal["github", "gitlab", "jira", "discord", "webhook"]
PROVIDERS: tuple[Provider, ...] = ("github", "gitlab", "jira", "discord", "webhook")

# What a target can be sent. Reports go only to the providers the report itself asks for.
SUBJECTS = ("report", "error_new", "error_regressed", "monitor_failing", "monitor_missed")


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    required: tuple[str, ...]
    optional: tuple[str, ...]
    secret_label: str  # what the secret is, for messages
    # Requests per second and burst of the per-target token bucket (providers' documented limits:
    # GitHub asks for ≤ ~1 content-creating request/s, a Discord webhook allows 5 per 2 s).
    rate: float
    burst: int


PROVIDER_SPECS: dict[Provider, ProviderSpec] = {
    "github": ProviderSpec(("repo",), ("base_url", "labels"), "token", 1.0, 5),
    "gitlab": ProviderSpec(("gitlab_project",), ("base_url", "labels"), "token", 5.0, 10),
    "jira": ProviderSpec(
        ("base_url", "jira_project"), ("issue_type", "email", "labels", "api_version"), "token", 5.0, 10
    ),
    "discord": ProviderSpec((), (), "webhook URL", 2.5, 5),
    "webhook": ProviderSpec(("url",), (), "signing secret", 50.0, 100),
}
DEFAULT_BASE_URLS = {"github": "https://api.github.com", "gitlab": "https://gitlab.com"}


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    project_id: str
    provider: Provider
    name: str
    settings: dict[str, str]
    secret: str  # Fernet token, never the cleartext
    subjects: tuple[str, ...] = SUBJECTS
    rate: float = 0.0  # 0: the provider's default
    created_at: str = ""
    removed: bool = False
    # `--allow-private`: may reach loopback and private networks (forgeline.notify.egress).
    allow_private: bool = False

    @property
    def spec(self) -> ProviderSpec:
        return PROVIDER_SPECS[self.provider]

    def describe(self) -> str:
        """Where it sends, without any secret (for `notify list` and logs)."""
        return self._destination() + (" (private networks allowed)" if self.allow_private else "")

    def _destination(self) -> str:
        s = self.settings
        if self.provider == "github":
            return f"{s.get('base_url', DEFAULT_BASE_URLS['github'])} {s['repo']}"
        if self.provider == "gitlab":
            return f"{s.get('base_url', DEFAULT_BASE_URLS['gitlab'])} project {s['gitlab_project']}"
        if self.provider == "jira":
            return f"{s['base_url']} project {s['jira_project']}"
        if self.provider == "webhook":
            parsed = urlparse(s["url"])
            return f"{parsed.scheme}://{parsed.netloc}{parsed.path}"
        return "discord webhook (URL encrypted)"


def target_key(target_id: str) -> bytes:
    return f"target:{target_id}".encode()


def encode_target(target: Target) -> bytes:
    return orjson.dumps(asdict(target))


def decode_target(value: bytes) -> Target:
    """Raises ValueError on a record we do not understand."""
    try:
        doc = orjson.loads(value)
        doc["subjects"] = tuple(doc.get("subjects") or SUBJECTS)
        if doc["provider"] not in PROVIDERS:
            raise ValueError(f"unknown provider {doc['provider']!r}")
        return Target(**doc)
    except (KeyError, TypeError, orjson.JSONDecodeError) as err:
        raise ValueError(f"bad notify target record: {err}") from err


def validate_settings(provider: str, settings: dict[str, str]) -> dict[str, str]:
    """The settings a provider needs, checked; raises ValueError with a message naming the option."""
    if provider not in PROVIDER_SPECS:
        raise ValueError(f"unknown provider {provider!r}; choose from {', '.join(PROVIDERS)}")
    spec = PROVIDER_SPECS[provider]
    clean = {k: v.strip() for k, v in settings.items() if v is not None and v.strip()}
    missing = [name for name in spec.required if name not in clean]
    if missing:
        raise ValueError(f"{provider} needs {', '.join('--' + m.replace('_', '-') for m in missing)}")
    extra = sorted(set(clean) - set(spec.required) - set(spec.optional))
    if extra:
        raise ValueError(f"{provider} takes no {', '.join('--' + e.replace('_', '-') for e in extra)}")
    for name in ("url", "base_url"):
        if name in clean:
            _check_url(f"--{name.replace('_', '-')}", clean[name])
            clean[name] = clean[name].rstrip("/")
    if provider == "github" and clean["repo"].count("/") != 1:
        raise ValueError("--repo must be OWNER/NAME")
    if provider == "jira" and clean.get("api_version", "2") not in ("2", "3"):
        raise ValueError("--api-version must be 2 or 3")
    return clean


def validate_secret(provider: str, secret: str) -> None:
    if not secret:
        raise ValueError(f"{provider} needs a {PROVIDER_SPECS[provider].secret_label} (--secret or --secret-env)")  # type: ignore[index]
    if provider == "discord":
        _check_url("the Discord webhook URL", secret)
        if "/api/webhooks/" not in urlparse(secret).path:
            raise ValueError("the Discord webhook URL must look like https://discord.com/api/webhooks/ID/TOKEN")


def destination_urls(provider: str, settings: dict[str, str], secret: str) -> list[str]:
    """The URLs a target sends to: its settings' URL or base URL (default: the provider's
    public API), or for Discord the webhook URL, which is its secret."""
    if provider == "discord":
        return [secret]
    if "url" in settings:
        return [settings["url"]]
    base = settings.get("base_url") or DEFAULT_BASE_URLS.get(provider)
    return [base] if base else []


def _check_url(what: str, url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{what} must be an http(s) URL")


def parse_subjects(raw: str) -> tuple[str, ...]:
    subjects = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    unknown = [s for s in subjects if s not in SUBJECTS]
    if unknown or not subjects:
        raise ValueError(f"--on takes a comma-separated list of {', '.join(SUBJECTS)}")
    return subjects


@dataclass
class TargetTable:
    """The folded state of control.notify: live targets by id."""

    targets: dict[str, Target] = field(default_factory=dict)

    def apply(self, target: Target) -> None:
        if target.removed:
            self.targets.pop(target.id, None)
        else:
            self.targets[target.id] = target

    def for_project(self, project_id: str) -> list[Target]:
        return [t for t in self.targets.values() if t.project_id == project_id]

    def find(self, ref: str) -> Target:
        matches = [t for t in self.targets.values() if t.id == ref or t.id.startswith(ref) or t.name == ref]
        if len(matches) != 1:
            raise LookupError(f"no single notify target matches {ref!r}")
        return matches[0]
