"""GitHub: a comment on the issue or pull request, or on the discussion.

* Issues: ``POST /repos/{owner}/{repo}/issues/{number}/comments`` (``Authorization: Bearer
  GITHUB_TOKEN``, a token that may write issues). Lookup: ``GET .../comments?since=<first
  attempt>`` for a comment by the token's own user (``GET /user``) with the same body.
* Discussions: the GraphQL mutation ``addDiscussionComment(input: {discussionId, body})``
  (``POST /graphql``; the token needs discussions write). GraphQL refusals come with a 200
  and ``errors``. Lookup: the discussion's last 50 comments, one by the viewer with the same
  body.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from earshot.listener.models import Mention, as_utc
from earshot.listener.sources.base import SourceError, SourceHttp, decode_json, from_iso

from .base import Posted, ReplyFatal, ReplyRetry, Writer, mapped

_REPO = re.compile(r"/repos/([^/]+/[^/]+)$")

ADD_COMMENT = (
    "mutation($id: ID!, $body: String!) { addDiscussionComment(input: "
    "{discussionId: $id, body: $body}) { comment { id url body createdAt } } }"
)
COMMENTS = (
    "query($id: ID!) { viewer { login } node(id: $id) { ... on Discussion { comments(last: 50) "
    "{ nodes { id url body createdAt author { login } } } } } }"
)


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
        """The issue's comments path, or ``discussion:<node id>``."""
        raw = mention.raw or {}
        node = raw.get("id")
        if "/discussions/" in str(raw.get("url") or "") and isinstance(node, str) and node:
            return f"discussion:{node}"
        match = _REPO.search(str(raw.get("repository_url") or ""))
        number = raw.get("number")
        if match is None or isinstance(number, bool) or not isinstance(number, int):
            raise ReplyFatal("not an issue, pull request or discussion earshot can comment on")
        return f"/repos/{match.group(1)}/issues/{number}/comments"

    def _graphql(self, query: str, variables: dict[str, Any]) -> Any:
        try:
            data = self.http.post_json(
                f"{self.base_url}/graphql",
                json_body={"query": query, "variables": variables},
                headers=self.headers,
            )
        except SourceError as exc:
            raise mapped(exc) from None
        errors = data.get("errors") if isinstance(data, dict) else None
        if errors:
            first = errors[0] if isinstance(errors[0], dict) else {}
            kind = str(first.get("type") or "")
            message = str(first.get("message") or "GraphQL error")[:200]
            if kind == "RATE_LIMITED":
                raise ReplyRetry(f"github: {message}", 60.0)
            raise ReplyFatal(f"github refused the comment: {kind or 'error'}: {message}")
        return (data or {}).get("data") or {}

    def post(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted:
        target = self.target(mention)
        if target.startswith("discussion:"):
            data = self._graphql(ADD_COMMENT, {"id": target.split(":", 1)[1], "body": text})
            comment = ((data.get("addDiscussionComment") or {}).get("comment")) or {}
            return _discussion_posted(comment)
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
        target = self.target(mention)
        if target.startswith("discussion:"):
            data = self._graphql(COMMENTS, {"id": target.split(":", 1)[1]})
            viewer = (data.get("viewer") or {}).get("login")
            nodes = (((data.get("node") or {}).get("comments")) or {}).get("nodes") or []
            for node in nodes:
                author = (node.get("author") or {}).get("login") if isinstance(node, dict) else None
                if author == viewer and node.get("body") == text:
                    return _discussion_posted(node)
            return None
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


def _discussion_posted(comment: Any) -> Posted:
    try:
        at = from_iso(comment["createdAt"]) if comment.get("createdAt") else None
        return Posted(str(comment["id"]), comment.get("url"), at)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ReplyFatal("github: the answer is not a discussion comment") from None
