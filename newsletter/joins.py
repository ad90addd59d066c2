"""Join links ("more from us"): which an issue's bodies carry, and each recipient's values.

Rendering puts one placeholder per offered list into the bodies (``%%JOIN_URL_BUSINESS%%``);
the send fills each with a link signed for that recipient and that list
(:class:`~newsletter.tokens.TokenPurpose` ``JOIN``), which ``/join/<token>`` honours. A
placeholder whose list is no longer configured (a send resumed after the config changed) gets
the public subscribe page instead. Pure: the entry points pass in the list ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from newsletter import urls
from newsletter.config import Settings
from newsletter.message import ISSUE_PLACEHOLDERS, MessageContent
from newsletter.model import JOIN_URL_PLACEHOLDER, join_placeholder_name
from newsletter.tokens import TokenPurpose, make_token


def join_names(content: MessageContent) -> tuple[str, ...]:
    """The names of the join placeholders in ``content``'s bodies, in order of appearance."""
    found = JOIN_URL_PLACEHOLDER.findall(content.html + content.text)
    return tuple(dict.fromkeys(marker.strip("%").lower() for marker in found))


def placeholders(content: MessageContent) -> tuple[str, ...]:
    """Every placeholder ``content`` carries: the unsubscribe link and its join links."""
    return (*ISSUE_PLACEHOLDERS, *join_names(content))


@dataclass(frozen=True)
class JoinLinks:
    """For one issue: each join placeholder's list id (None: the list is gone)."""

    targets: Mapping[str, int | None] = field(default_factory=dict)

    @classmethod
    def for_content(
        cls, content: MessageContent, settings: Settings, list_ids: Mapping[str, int]
    ) -> JoinLinks:
        by_name = {join_placeholder_name(slug): list_ids.get(slug) for slug in settings.lists}
        return cls({name: by_name.get(name) for name in join_names(content)})

    def values(
        self, settings: Settings, subscriber_uid: str, *, issued_at: int | None = None
    ) -> dict[str, str]:
        """The placeholder values of one recipient's copy."""
        base = settings.publication.base_url
        result = {}
        for name, list_id in self.targets.items():
            if list_id is None:
                result[name] = urls.subscribe_url(base)
                continue
            token = make_token(
                settings.secret_key,
                TokenPurpose.JOIN,
                subscriber_uid,
                list_id,
                issued_at=issued_at,
            )
            result[name] = urls.join_url(base, token)
        return result
