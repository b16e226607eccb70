"""GitHub: a comment on the issue (``POST /repos/{owner}/{repo}/issues/{number}/comments``,
``Authorization: Bearer GITHUB_TOKEN``, a token that may write issues).

Lookup: ``GET /repos/{owner}/{repo}/issues/{number}/comments?since=<first attempt>`` for a
comment by the token's own user (``GET /user``) with the same body. Discussions (GraphQL
``addDiscussionComment``) are not written yet: they get the copy-and-"I replied" modal.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from earshot.listener.models import Mention, as_utc
from earshot.listener.sources.base import SourceError, SourceHttp, decode_json, from_iso

from .base import Posted, ReplyFatal, Writer, mapped

_REPO = re.compile(r"/repos/([^/]+/[^/]+)$")


class GitHubWriter(Writer):
    platform = "github"

    def __init__(self, http: SourceHttp, base_url: str, token: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        self._login: str | None = None

    def target(self, mention: Mention) -> str:
        raw = mention.raw or {}
        match = _REPO.search(str(raw.get("repository_url") or ""))
        number = raw.get("number")
        if match is None or isinstance(number, bool) or not isinstance(number, int):
            raise ReplyFatal("not an issue or pull request earshot can comment on")
        return f"/repos/{match.group(1)}/issues/{number}/comments"

    def post(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted:
        try:
            response = self.http.request(
                "POST",
                self.base_url + self.target(mention),
                headers=self.headers,
                json_body={"body": text},
            )
            return _posted(decode_json(response))
        except SourceError as exc:
            raise mapped(exc) from None

    def find(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted | None:
        since = (as_utc(attempted_at) or attempted_at).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            if self._login is None:
                me = self.http.get_json(f"{self.base_url}/user", headers=self.headers)
                self._login = str(me["login"])
            comments = self.http.get_json(
                self.base_url + self.target(mention),
                params={"since": since, "per_page": 100},
                headers=self.headers,
            )
        except SourceError as exc:
            raise mapped(exc) from None
        except (KeyError, TypeError):
            raise ReplyFatal("github: GET /user answered without a login") from None
        for comment in comments if isinstance(comments, list) else []:
            user = comment.get("user") if isinstance(comment, dict) else None
            mine = isinstance(user, dict) and user.get("login") == self._login
            if mine and comment.get("body") == text:
                return _posted(comment)
        return None


def _posted(comment: Any) -> Posted:
    try:
        at = from_iso(comment["created_at"]) if comment.get("created_at") else None
        return Posted(str(comment["id"]), comment.get("html_url"), at)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ReplyFatal("github: the answer is not a comment") from None
