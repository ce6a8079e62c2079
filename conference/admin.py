"""
piccolo-admin for the conference tables, and the admin account it logs in
with.

:func:`create_admin_app` configures piccolo-admin (readable names, newest
first, useful filters); it is mounted at ``/admin/`` by ``conference.app``
and can be mounted on its own by a host application. CSRF protection and
login rate limiting are piccolo-admin's defaults and stay on.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from piccolo.apps.user.tables import BaseUser
from piccolo_admin.endpoints import FormConfig, TableConfig, create_admin
from piccolo_api.crud.endpoints import OrderBy
from piccolo_api.session_auth.tables import SessionsBase
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.types import ASGIApp

from conference.errors import ConferenceError, ConfigurationError
from conference.lifecycle.erasure import erase_participant
from conference.settings import Settings, get_settings
from conference.tables import AnalyticsEvent, Meeting, Participant, Recording

logger = logging.getLogger(__name__)

#: Fewer characters than this makes ADMIN_PASSWORD too weak for production.
MIN_PRODUCTION_PASSWORD_LENGTH = 16

_WEAK_PASSWORDS = {"admin", "password", "changeme", "change-me", "secret", "piccolo"}


def table_configs() -> list[TableConfig]:
    """How each conference table appears in the admin."""
    return [
        TableConfig(
            Meeting,
            menu_group="Conference",
            link_column=Meeting.room_name,
            visible_columns=[
                Meeting.room_name,
                Meeting.created_at,
                Meeting.ended_at,
                Meeting.metadata,
            ],
            visible_filters=[Meeting.room_name, Meeting.created_at, Meeting.ended_at],
            order_by=[OrderBy(Meeting.created_at, ascending=False)],
        ),
        TableConfig(
            Participant,
            menu_group="Conference",
            link_column=Participant.identity,
            visible_columns=[
                Participant.identity,
                Participant.meeting_id,
                Participant.joined_at,
                Participant.left_at,
            ],
            visible_filters=[
                Participant.meeting_id,
                Participant.identity,
                Participant.joined_at,
                Participant.left_at,
            ],
            order_by=[OrderBy(Participant.joined_at, ascending=False)],
        ),
        TableConfig(
            Recording,
            menu_group="Conference",
            link_column=Recording.egress_id,
            visible_columns=[
                Recording.egress_id,
                Recording.meeting_id,
                Recording.status,
                Recording.started_at,
                Recording.completed_at,
                Recording.duration,
                Recording.file_size,
            ],
            visible_filters=[Recording.meeting_id, Recording.status, Recording.started_at],
            order_by=[OrderBy(Recording.started_at, ascending=False)],
        ),
        TableConfig(
            AnalyticsEvent,
            menu_group="Conference",
            link_column=AnalyticsEvent.event_type,
            visible_columns=[
                AnalyticsEvent.event_type,
                AnalyticsEvent.meeting_id,
                AnalyticsEvent.participant_id,
                AnalyticsEvent.created_at,
            ],
            visible_filters=[
                AnalyticsEvent.meeting_id,
                AnalyticsEvent.participant_id,
                AnalyticsEvent.event_type,
                AnalyticsEvent.created_at,
            ],
            order_by=[OrderBy(AnalyticsEvent.created_at, ascending=False)],
        ),
        # piccolo-admin lets only superusers change these two.
        TableConfig(BaseUser, menu_group="Access"),
        TableConfig(SessionsBase, menu_group="Access"),
    ]


def create_admin_app(settings: Settings | None = None) -> ASGIApp:
    """
    piccolo-admin for the conference tables. Mount it at ``/admin/``.

    In production its cookies are ``Secure`` (HTTPS only) and its CSRF
    check also compares the ``Origin``/``Referer`` with ``ALLOWED_HOSTS``.
    """
    settings = settings or get_settings()
    return create_admin(
        tables=table_configs(),
        site_name="LiveKit conference",
        production=settings.production,
        allowed_hosts=settings.allowed_host_list,
        # Relative, so it also works when the whole app is mounted under a prefix.
        sidebar_links={"Usage reports": "../reports/"},
        auto_include_related=False,
        forms=[erase_form()],
    )


# --- Erase a participant -----------------------------------------------------


class EraseParticipant(BaseModel):
    """The "Erase a participant" form: a preview first, then the erasure."""

    identity: str = Field(description="The LiveKit participant identity, exactly as stored.")
    room: str = Field(default="", description="Only meetings of this room (empty: all rooms).")
    confirm: str = Field(
        default="",
        description=(
            "Empty: preview what would be erased, nothing changes. "
            "To erase, type the identity again here and submit."
        ),
    )


async def erase_participant_form(request: Request, data: EraseParticipant) -> str:
    """
    The form's endpoint: superusers only. Without ``confirm`` it answers
    with a dry run; with ``confirm`` equal to the identity it erases (even
    in production: the superuser's typed confirmation is the explicit
    consent the command asks for with ``--force``). The message shown is
    the answer; errors are raised as ``ValueError``, which the admin shows.
    """
    user = request.user.user
    if not getattr(user, "superuser", False):
        raise ValueError("only superusers may erase participants; ask one to do it")
    identity = data.identity.strip()
    if not identity:
        raise ValueError("give the identity to erase, exactly as stored")
    confirmed = data.confirm.strip()
    if confirmed and confirmed != identity:
        raise ValueError(
            "the confirmation does not match the identity; nothing was erased. Type the "
            "identity again exactly, or leave the confirmation empty for a preview"
        )
    try:
        result = await erase_participant(
            identity,
            erased_by=f"admin:{user.username}",
            room=data.room.strip() or None,
            dry_run=not confirmed,
            force=True,
        )
    except ConferenceError as error:
        raise ValueError(str(error)) from error
    if not confirmed:
        return (
            f"Preview, nothing changed: erasing {identity!r} {result.describe()} "
            "To erase, type the identity again in 'confirm' and submit."
        )
    return f"Erased {identity!r} (record {result.erasure_id}): {result.describe()}"


def erase_form() -> FormConfig:
    """The admin's "Erase a participant" form (:func:`erase_participant_form`)."""
    return FormConfig(
        name="Erase a participant",
        pydantic_model=EraseParticipant,
        endpoint=erase_participant_form,
        description=(
            "Deletes a participant identity's sessions and the events about them, and "
            "scrubs it from other events (GDPR Art. 17); superusers only. Submit once "
            "for a preview, then again with the identity typed in 'confirm'."
        ),
    )


# --- The admin account -----------------------------------------------------


@dataclass(frozen=True)
class AdminCredentials:
    """Who logs in to the admin, and where the password came from."""

    username: str
    password: str
    source: str


def check_production_settings(settings: Settings) -> None:
    """
    Refuse a production configuration that would be unsafe to serve:
    no ``ALLOWED_HOSTS``, or a missing or weak ``ADMIN_PASSWORD``.
    """
    if not settings.production:
        return
    problems = []
    if not settings.allowed_host_list:
        problems.append("ALLOWED_HOSTS is empty (name the host names this app serves)")
    password = settings.admin_password.get_secret_value() if settings.admin_password else ""
    weakness = weak_password_reason(password, settings.admin_username) if password else None
    if not password:
        problems.append("ADMIN_PASSWORD is not set")
    elif weakness:
        problems.append(f"ADMIN_PASSWORD is too weak: {weakness}")
    if problems:
        raise ConfigurationError(
            "refusing to start with CONFERENCE_ENV=production: " + "; ".join(problems)
        )


def weak_password_reason(password: str, username: str) -> str | None:
    """Why ``password`` is too weak for production, or ``None``."""
    if len(password) < MIN_PRODUCTION_PASSWORD_LENGTH:
        return f"shorter than {MIN_PRODUCTION_PASSWORD_LENGTH} characters"
    if password.lower() in _WEAK_PASSWORDS or password.lower() == username.lower():
        return "a well-known or guessable value"
    if len(set(password)) < 6:
        return "too few distinct characters"
    return None


def development_credentials(settings: Settings) -> AdminCredentials:
    """
    The development admin's credentials: ``ADMIN_PASSWORD`` when set,
    otherwise a random password generated on first use and kept in the
    git-ignored state directory, so it stays the same across runs.
    """
    if settings.admin_password is not None:
        return AdminCredentials(
            settings.admin_username, settings.admin_password.get_secret_value(), "ADMIN_PASSWORD"
        )
    path = settings.conference_state_dir / "admin-password"
    if path.exists():
        password = path.read_text().strip()
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(18)
        path.touch(mode=0o600)
        path.write_text(password + "\n")
    return AdminCredentials(settings.admin_username, password, str(_relative(path)))


async def ensure_development_admin(settings: Settings | None = None) -> AdminCredentials:
    """
    Create the development admin user, or reset its password to the
    current credentials. Never runs in production: there, create users
    explicitly with ``piccolo user create``.
    """
    settings = settings or get_settings()
    if settings.production:
        raise ConfigurationError(
            "no users are created automatically with CONFERENCE_ENV=production; "
            "use `piccolo user create`"
        )
    credentials = development_credentials(settings)
    user = await BaseUser.objects().get(BaseUser.username == credentials.username)
    if user is None:
        await BaseUser.create_user(
            username=credentials.username,
            password=credentials.password,
            email=f"{credentials.username}@localhost",
            active=True,
            admin=True,
            superuser=True,
        )
        logger.info("created the development admin user %s", credentials.username)
    else:
        await BaseUser.update_password(user=user.id, password=credentials.password)
        await BaseUser.update(
            {BaseUser.active: True, BaseUser.admin: True, BaseUser.superuser: True}
        ).where(BaseUser.id == user.id)
    return credentials


def _relative(path: Path) -> Path:
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path
