"""The first console user: created once, with a random password printed once."""

from __future__ import annotations

from forgeline.bus.port import Bus
from forgeline.manage.ops import Actor, Management
from forgeline.manage.store import ConsoleStore
from forgeline.tenancy.store import TenancyAdmin

FIRST_USER = "admin"


async def ensure_first_user(bus: Bus, actor_name: str = "forgeline-up") -> tuple[str, str] | None:
    """(user name, password) when the first user was created now; None when any user exists."""
    async with TenancyAdmin(bus) as tenancy, ConsoleStore(bus) as store:
        if store.table.users:
            return None
        user, password = await Management(tenancy, store).create_user(Actor(actor_name), FIRST_USER)
    return user.username, password
