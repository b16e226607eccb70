"""Strict fakes of the platforms earshot posts replies to, at the HTTP layer.

Each fake is an ``httpx.MockTransport`` handler (``fake.transport``) that checks a write
the way the platform documents it and refuses what the platform refuses:

* ``FakeMastodon``: ``POST /api/v1/statuses`` needs the bearer token, a ``status``, an
  ``in_reply_to_id`` it holds (404 ``Record not found``), at most 500 characters counted as
  Mastodon does (a URL is 23; 422 ``Validation failed: Text character limit of 500
  exceeded``); the same ``Idempotency-Key`` answers the same status, posting once.
* ``FakeBluesky``: ``createSession`` with the handle and app password; ``createRecord`` of
  an ``app.bsky.feed.post`` in the session's own repo, ``text`` at most 300 graphemes and
  3,000 bytes (400 ``InvalidRequest``), ``reply.root``/``reply.parent`` strong refs to
  posts it holds, an ``rkey`` in TID syntax that is not taken; ``getRecord`` answers 400
  ``RecordNotFound`` for a missing record.
* ``FakeAppStoreConnectReplies`` (``FakeAppStoreConnect`` plus the writes):
  ``POST /v1/customerReviewResponses`` takes the JSON:API body only, a known review and a
  ``responseBody`` of 1..5,970 characters (409 ``ENTITY_ERROR.ATTRIBUTE.INVALID``); a second
  response to a review replaces the first (counted in ``replaced``);
  ``GET /v1/customerReviews/{id}/response`` answers it, or 404.
* ``FakeGooglePlayReplies`` (``FakeGooglePlay`` plus ``reviews.reply`` and ``reviews.get``):
  ``replyText`` of at most 350 characters (400 ``INVALID_ARGUMENT``), a review it lists.
* ``FakeGitHub``: issue comments with a token (401), a ``body`` of 1..65,536 characters
  (422 ``Validation Failed``); ``GET /user``; comments listed with ``since``.
* ``FakeDiscourse``: ``POST /posts.json`` with ``Api-Key``/``Api-Username`` (403
  ``invalid_access``), ``raw`` of 20..32,000 characters (422, as ``min_post_length`` and
  ``max_post_length`` do), a topic and post number it holds; ``GET /t/{id}.json``.

Faults, for the exactly-once tests: ``store_then_fail`` (a list of statuses) makes the next
writes store the reply and then answer that status (a 5xx after success);
``fail_before_store`` answers without storing.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import regex

from .fakestores import FakeAppStoreConnect, FakeGooglePlay, asc_error, google_api_error

_GRAPHEME = regex.compile(r"\X")
#: The start of Bluesky's record-validation messages.
BAD_POST = "Invalid app.bsky.feed.post record: "
_TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")


def _json(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, json=body)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Faults:
    """Write faults: answer a status after storing, or instead of storing."""

    def __init__(self) -> None:
        self.store_then_fail: list[int] = []
        self.fail_before_store: list[int] = []
        #: Writes that stored something (whatever was answered).
        self.stored = 0

    def before(self) -> httpx.Response | None:
        if self.fail_before_store:
            return _json(self.fail_before_store.pop(0), {"error": "unavailable"})
        return None

    def after(self, response: httpx.Response) -> httpx.Response:
        self.stored += 1
        if self.store_then_fail:
            return _json(self.store_then_fail.pop(0), {"error": "bad gateway"})
        return response


# -- Mastodon ----------------------------------------------------------------------------


def mastodon_length(text: str) -> int:
    text = re.sub(r"(?<![\w@])(@[A-Za-z0-9_]+)@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", r"\1", text)
    return len(re.sub(r"https?://\S+", "x" * 23, text))


class FakeMastodon(Faults):
    def __init__(
        self, token: str = "mastodon-token", base: str = "https://mastodon.example"
    ) -> None:
        super().__init__()
        self.token = token
        self.base = base
        self.me = {"id": "900", "acct": "acme"}
        #: id -> status (the customers' and ours).
        self.statuses: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, str] = {}
        self.requests: list[httpx.Request] = []
        self._next = 1000
        self.transport = httpx.MockTransport(self.handle)

    def add_status(self, status_id: str, text: str, acct: str = "customer") -> dict[str, Any]:
        status = {
            "id": status_id,
            "uri": f"{self.base}/users/{acct}/statuses/{status_id}",
            "url": f"{self.base}/@{acct}/{status_id}",
            "created_at": _now(),
            "content": f"<p>{text}</p>",
            "account": {"id": "1", "acct": acct},
            "in_reply_to_id": None,
            "spoiler_text": "",
            "language": "en",
        }
        self.statuses[status_id] = status
        return status

    def ours(self) -> list[dict[str, Any]]:
        return [s for s in self.statuses.values() if s["account"]["id"] == self.me["id"]]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return _json(401, {"error": "The access token is invalid"})
        path = request.url.path
        if request.method == "POST" and path == "/api/v1/statuses":
            return self._post(request)
        if request.method == "GET" and path == "/api/v1/accounts/verify_credentials":
            return _json(200, self.me)
        if request.method == "GET" and path == f"/api/v1/accounts/{self.me['id']}/statuses":
            limit = min(int(request.url.params.get("limit", "20")), 40)
            newest = sorted(self.ours(), key=lambda s: int(s["id"]), reverse=True)
            return _json(200, newest[:limit])
        return _json(404, {"error": "Record not found"})

    def _post(self, request: httpx.Request) -> httpx.Response:
        key = request.headers.get("idempotency-key")
        if key and key in self.keys:  # Mastodon answers the first status again
            return _json(200, self.statuses[self.keys[key]])
        refused = self.before()
        if refused is not None:
            return refused
        body = json.loads(request.content or b"{}")
        text = body.get("status")
        if not isinstance(text, str) or not text.strip():
            return _json(422, {"error": "Validation failed: Text can't be blank"})
        if mastodon_length(text) > 500:
            return _json(422, {"error": "Validation failed: Text character limit of 500 exceeded"})
        parent = body.get("in_reply_to_id")
        if parent is not None and parent not in self.statuses:
            return _json(404, {"error": "Record not found"})
        self._next += 1
        status_id = str(self._next)
        status = self.add_status(status_id, text, self.me["acct"])
        status["account"] = dict(self.me)
        status["in_reply_to_id"] = parent
        if key:
            self.keys[key] = status_id
        return self.after(_json(200, status))


# -- Bluesky ------------------------------------------------------------------------------


class FakeBluesky(Faults):
    def __init__(self, handle: str = "acme.bsky.social", password: str = "app-pass-1234") -> None:
        super().__init__()
        self.handle = handle
        self.password = password
        self.did = "did:plc:acmeacmeacmeacme"
        self.token = "bsky-access-jwt"
        #: at-uri -> {"uri", "cid", "value"}.
        self.records: dict[str, dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self.handle_request)

    def add_post(self, author_did: str, rkey: str, text: str) -> dict[str, Any]:
        """A customer's post as the search API shows it (a ``postView``)."""
        uri = f"at://{author_did}/app.bsky.feed.post/{rkey}"
        cid = f"bafyrei{rkey}"
        record = {"$type": "app.bsky.feed.post", "text": text, "createdAt": _now()}
        self.records[uri] = {"uri": uri, "cid": cid, "value": record}
        return {
            "uri": uri,
            "cid": cid,
            "author": {"did": author_did, "handle": "customer.bsky.social"},
            "record": record,
            "indexedAt": _now(),
        }

    def ours(self) -> list[dict[str, Any]]:
        return [r for u, r in self.records.items() if u.startswith(f"at://{self.did}/")]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/xrpc/com.atproto.server.createSession":
            body = json.loads(request.content or b"{}")
            if (body.get("identifier"), body.get("password")) != (self.handle, self.password):
                return _json(
                    401,
                    {
                        "error": "AuthenticationRequired",
                        "message": "Invalid identifier or password",
                    },
                )
            return _json(
                200,
                {
                    "did": self.did,
                    "handle": self.handle,
                    "accessJwt": self.token,
                    "refreshJwt": "r",
                },
            )
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return _json(
                401, {"error": "AuthenticationRequired", "message": "Authentication Required"}
            )
        if path == "/xrpc/com.atproto.repo.createRecord" and request.method == "POST":
            return self._create(json.loads(request.content or b"{}"))
        if path == "/xrpc/com.atproto.repo.getRecord" and request.method == "GET":
            params = request.url.params
            uri = f"at://{params.get('repo')}/{params.get('collection')}/{params.get('rkey')}"
            if uri not in self.records:
                return _json(
                    400, {"error": "RecordNotFound", "message": f"Could not locate record: {uri}"}
                )
            return _json(200, self.records[uri])
        return _json(404, {"error": "MethodNotImplemented", "message": "Method Not Implemented"})

    def _invalid(self, message: str) -> httpx.Response:
        return _json(400, {"error": "InvalidRequest", "message": message})

    def _create(self, body: dict[str, Any]) -> httpx.Response:
        if body.get("repo") not in (self.did, self.handle):
            return self._invalid("Input/repo must be the session's own repo")
        if body.get("collection") != "app.bsky.feed.post":
            return self._invalid("Input/collection must be app.bsky.feed.post")
        record = body.get("record")
        if not isinstance(record, dict) or record.get("$type") != "app.bsky.feed.post":
            return self._invalid("Invalid app.bsky.feed.post record: Record/$type is required")
        text = record.get("text")
        if not isinstance(text, str):
            return self._invalid("Invalid app.bsky.feed.post record: Record/text must be a string")
        if len(_GRAPHEME.findall(text)) > 300:
            return self._invalid(BAD_POST + "Record/text must not be longer than 300 graphemes")
        if len(text.encode()) > 3000:
            return self._invalid(BAD_POST + "Record/text must not be longer than 3000 characters")
        if not isinstance(record.get("createdAt"), str):
            return self._invalid("Invalid app.bsky.feed.post record: Record/createdAt is required")
        reply = record.get("reply")
        if reply is not None:
            for part in ("root", "parent"):
                ref = reply.get(part) if isinstance(reply, dict) else None
                if (
                    not isinstance(ref, dict)
                    or not isinstance(ref.get("uri"), str)
                    or not ref.get("cid")
                ):
                    return self._invalid(BAD_POST + f"Record/reply/{part} must be a strongRef")
                held = self.records.get(ref["uri"])
                if held is None or held["cid"] != ref["cid"]:
                    return self._invalid(
                        f"Invalid app.bsky.feed.post record: reply {part} not found"
                    )
        rkey = body.get("rkey") or datetime.now(UTC).strftime("3k%y%m%d%H%M%S")[:13]
        if not _TID.match(rkey):
            return self._invalid("Input/rkey must be a valid TID")
        uri = f"at://{self.did}/app.bsky.feed.post/{rkey}"
        if uri in self.records:
            return self._invalid("Record already exists")
        refused = self.before()
        if refused is not None:
            return refused
        cid = f"bafyrei{rkey}"
        self.records[uri] = {"uri": uri, "cid": cid, "value": record}
        return self.after(_json(200, {"uri": uri, "cid": cid, "validationStatus": "valid"}))


# -- App Store Connect and Google Play --------------------------------------------------


class FakeAppStoreConnectReplies(FakeAppStoreConnect, Faults):
    """``FakeAppStoreConnect`` (reads, auth, rate limit) plus responses to reviews."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        FakeAppStoreConnect.__init__(self, *args, **kwargs)
        Faults.__init__(self)
        self.replaced = 0
        self._next = 0

    def _review(self, review_id: str) -> bool:
        return any(r["id"] == review_id for reviews in self.apps.values() for r in reviews)

    def _route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/v1/customerReviewResponses":
            return self._respond(request)
        match = re.fullmatch(r"/v1/customerReviews/([^/]+)/response", path)
        if request.method == "GET" and match:
            response = self.responses.get(match.group(1))
            if response is None:
                return asc_error(
                    404,
                    "NOT_FOUND",
                    "The specified resource does not exist",
                    "There is no response for this review",
                )
            return _json(200, {"data": response})
        return super()._route(request)

    def _respond(self, request: httpx.Request) -> httpx.Response:
        try:
            data = json.loads(request.content)["data"]
            review = data["relationships"]["review"]["data"]
            body = data["attributes"]["responseBody"]
            if data["type"] != "customerReviewResponses" or review["type"] != "customerReviews":
                raise ValueError("type")
        except (KeyError, TypeError, ValueError):
            return asc_error(
                422,
                "ENTITY_UNPROCESSABLE",
                "The request entity is not correct",
                "The request body is not a valid customerReviewResponses create request",
            )
        if not isinstance(body, str) or not 1 <= len(body) <= 5970:
            return asc_error(
                409,
                "ENTITY_ERROR.ATTRIBUTE.INVALID",
                "An attribute value is invalid.",
                "'responseBody' must be between 1 and 5970 characters",
            )
        if not self._review(str(review["id"])):
            return asc_error(
                404,
                "NOT_FOUND",
                "The specified resource does not exist",
                f"There is no resource of type 'customerReviews' with id '{review['id']}'",
            )
        refused = self.before()
        if refused is not None:
            return refused
        review_id = str(review["id"])
        if review_id in self.responses:
            self.replaced += 1  # at most one response per review: this one replaces it
        self._next += 1
        resource = {
            "type": "customerReviewResponses",
            "id": f"resp-{self._next}",
            "attributes": {
                "responseBody": body,
                "lastModifiedDate": _now(),
                "state": "PENDING_PUBLISH",
            },
            "relationships": {"review": {"data": {"type": "customerReviews", "id": review_id}}},
        }
        self.responses[review_id] = resource
        return self.after(_json(201, {"data": resource}))


class FakeGooglePlayReplies(FakeGooglePlay, Faults):
    """``FakeGooglePlay`` plus ``reviews.reply`` and ``reviews.get``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        FakeGooglePlay.__init__(self, *args, **kwargs)
        Faults.__init__(self)

    def _find(self, package: str, review_id: str) -> dict[str, Any] | None:
        return next((r for r in self.reviews.get(package, []) if r["reviewId"] == review_id), None)

    def _api(self, request: httpx.Request) -> httpx.Response:
        match = re.fullmatch(
            r"/androidpublisher/v3/applications/([^/]+)/reviews/([^/:]+)(:reply)?", request.url.path
        )
        if match is None:
            return super()._api(request)
        header = request.headers.get("authorization", "")
        grant = self.tokens.get(header.removeprefix("Bearer ")) if header else None
        if grant is None or grant[0] <= self.now():
            return google_api_error(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials."
            )
        package, review_id, reply = match.groups()
        if package not in self.packages:
            return google_api_error(403, "PERMISSION_DENIED", "The caller does not have permission")
        review = self._find(package, review_id)
        if review is None:
            return google_api_error(404, "NOT_FOUND", "Review not found.")
        if not reply:
            if request.method != "GET":
                return google_api_error(404, "NOT_FOUND", "Not found")
            return _json(200, review)
        if request.method != "POST":
            return google_api_error(404, "NOT_FOUND", "Not found")
        try:
            body = json.loads(request.content)
            text = body["replyText"]
            if set(body) != {"replyText"} or not isinstance(text, str):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            return google_api_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if not text.strip() or len(text) > 350:
            return google_api_error(
                400, "INVALID_ARGUMENT", "The reply text must be between 1 and 350 characters."
            )
        refused = self.before()
        if refused is not None:
            return refused
        seconds = int(self.now())
        review["comments"] = [c for c in review["comments"] if "developerComment" not in c]
        review["comments"].append(
            {
                "developerComment": {
                    "text": text,
                    "lastModified": {"seconds": str(seconds), "nanos": 0},
                }
            }
        )
        result = {"replyText": text, "lastEdited": {"seconds": str(seconds), "nanos": 0}}
        return self.after(_json(200, {"result": result}))


# -- GitHub and Discourse ----------------------------------------------------------------


class FakeGitHub(Faults):
    def __init__(self, token: str = "ghp_test", login: str = "acme-bot") -> None:
        super().__init__()
        self.token = token
        self.login = login
        #: "owner/repo#number" -> comments.
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[httpx.Request] = []
        self._next = 5000
        self.transport = httpx.MockTransport(self.handle)

    def add_discussion(self, repo: str, number: int) -> dict[str, Any]:
        """A discussion as the GraphQL search returns it (its node id keys the comments)."""
        node_id = f"D_kwDOAcme{number:04d}"
        self.comments[node_id] = []
        return {
            "id": node_id,
            "title": "Sync loses notes",
            "body": "Since 2.0 my notes vanish after a sync",
            "url": f"https://github.com/{repo}/discussions/{number}",
            "createdAt": "2026-12-01T10:00:00Z",
            "author": {"login": "customer"},
            "repository": {"nameWithOwner": repo},
        }

    def _graphql(self, body: dict[str, Any]) -> httpx.Response:
        query, variables = str(body.get("query") or ""), body.get("variables") or {}
        node_id = variables.get("id")
        if node_id not in self.comments or not str(node_id).startswith("D_"):
            return _json(
                200,
                {
                    "data": None,
                    "errors": [
                        {
                            "type": "NOT_FOUND",
                            "message": f"Could not resolve to a node with the global id of "
                            f"'{node_id}'",
                        }
                    ],
                },
            )
        thread = self.comments[node_id]
        if "addDiscussionComment" not in query:
            nodes = thread[-50:]
            return _json(
                200,
                {"data": {"viewer": {"login": self.login}, "node": {"comments": {"nodes": nodes}}}},
            )
        text = variables.get("body")
        if not isinstance(text, str) or not 1 <= len(text) <= 65536:
            return _json(
                200,
                {
                    "data": {"addDiscussionComment": None},
                    "errors": [
                        {
                            "type": "UNPROCESSABLE",
                            "message": "Body is too long (maximum is 65536 characters)",
                        }
                    ],
                },
            )
        refused = self.before()
        if refused is not None:
            return refused
        self._next += 1
        comment = {
            "id": f"DC_kwDOAcme{self._next}",
            "url": f"https://github.com/acme/notes/discussions/1#discussioncomment-{self._next}",
            "body": text,
            "createdAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "author": {"login": self.login},
        }
        thread.append(comment)
        return self.after(_json(200, {"data": {"addDiscussionComment": {"comment": comment}}}))

    def add_issue(self, repo: str, number: int) -> dict[str, Any]:
        self.comments[f"{repo}#{number}"] = []
        return {
            "id": 77000 + number,
            "number": number,
            "title": "App crashes",
            "body": "The app crashes on start",
            "html_url": f"https://github.com/{repo}/issues/{number}",
            "repository_url": f"https://api.github.com/repos/{repo}",
            "user": {"login": "customer"},
            "created_at": "2026-12-01T10:00:00Z",
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return _json(401, {"message": "Bad credentials", "status": "401"})
        if request.url.path == "/user":
            return _json(200, {"login": self.login, "id": 1})
        if request.url.path == "/graphql" and request.method == "POST":
            return self._graphql(json.loads(request.content or b"{}"))
        match = re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/(\d+)/comments", request.url.path)
        if match is None or f"{match.group(1)}#{match.group(2)}" not in self.comments:
            return _json(404, {"message": "Not Found", "status": "404"})
        thread = self.comments[f"{match.group(1)}#{match.group(2)}"]
        if request.method == "GET":
            since = request.url.params.get("since")
            shown = [c for c in thread if since is None or c["updated_at"] >= since]
            return _json(200, shown)
        body = json.loads(request.content or b"{}").get("body")
        if not isinstance(body, str) or not 1 <= len(body) <= 65536:
            return _json(
                422,
                {"message": "Validation Failed", "errors": [{"field": "body", "code": "invalid"}]},
            )
        refused = self.before()
        if refused is not None:
            return refused
        self._next += 1
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        comment = {
            "id": self._next,
            "body": body,
            "user": {"login": self.login},
            "html_url": f"https://github.com/{match.group(1)}/issues/{match.group(2)}#issuecomment-{self._next}",
            "created_at": stamp,
            "updated_at": stamp,
        }
        thread.append(comment)
        return self.after(_json(201, comment))


class FakeDiscourse(Faults):
    def __init__(self, key: str = "discourse-key", username: str = "acme_support") -> None:
        super().__init__()
        self.key = key
        self.username = username
        #: topic id -> posts.
        self.topics: dict[int, list[dict[str, Any]]] = {}
        self.requests: list[httpx.Request] = []
        self._next = 900
        self.transport = httpx.MockTransport(self.handle)

    def add_post(self, topic_id: int, post_number: int, text: str) -> dict[str, Any]:
        self._next += 1
        post = {
            "id": self._next,
            "topic_id": topic_id,
            "post_number": post_number,
            "topic_slug": "app-crashes",
            "topic_title": "App crashes",
            "username": "customer",
            "cooked": f"<p>{text}</p>",
            "created_at": _now(),
            "reply_to_post_number": None,
        }
        self.topics.setdefault(topic_id, []).append(post)
        return post

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if (
            request.headers.get("api-key") != self.key
            or request.headers.get("api-username") != self.username
        ):
            return _json(
                403,
                {
                    "errors": ["You are not permitted to view the requested resource."],
                    "error_type": "invalid_access",
                },
            )
        match = re.fullmatch(r"/t/(\d+)\.json", request.url.path)
        if request.method == "GET" and match:
            posts = self.topics.get(int(match.group(1)))
            if posts is None:
                return _json(404, {"errors": ["The requested URL or resource could not be found."]})
            return _json(200, {"id": int(match.group(1)), "post_stream": {"posts": posts}})
        if request.method == "POST" and request.url.path == "/posts.json":
            body = json.loads(request.content or b"{}")
            raw, topic, number = (
                body.get("raw"),
                body.get("topic_id"),
                body.get("reply_to_post_number"),
            )
            if not isinstance(raw, str) or len(raw.strip()) < 20:
                return _json(422, {"errors": ["Body is too short (minimum is 20 characters)"]})
            if len(raw) > 32000:
                return _json(422, {"errors": ["Body is too long (maximum is 32000 characters)"]})
            posts = self.topics.get(topic) if isinstance(topic, int) else None
            if posts is None or not any(p["post_number"] == number for p in posts):
                return _json(404, {"errors": ["The requested URL or resource could not be found."]})
            refused = self.before()
            if refused is not None:
                return refused
            post = self.add_post(topic, max(p["post_number"] for p in posts) + 1, raw)
            post.update(username=self.username, reply_to_post_number=number)
            return self.after(_json(200, post))
        return _json(404, {"errors": ["The requested URL or resource could not be found."]})


def iso(delta: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + delta).isoformat()


# -- Reddit --------------------------------------------------------------------------------


class FakeReddit(Faults):
    """Reddit's token endpoint (script app, password grant) and ``/api/comment``.

    The token takes HTTP basic auth with the app's id and secret (401 otherwise) and the
    account's password (200 ``{"error": "invalid_grant"}`` otherwise, as Reddit answers).
    ``POST /api/comment`` takes a form (``api_type=json``, ``thing_id`` of a post or comment
    it holds, ``text`` of 1..10,000 characters) and answers refusals with a 200 and
    ``json.errors``, as Reddit does.
    """

    def __init__(self, auth: str = "https://auth.reddit.test") -> None:
        super().__init__()
        self.auth = auth
        self.client = ("app123", "s3cret")
        self.account = ("acme_bot", "hunter2")
        self.token = "reddit-token-1"
        #: fullname -> thing data (posts, comments; ours have author acme_bot).
        self.things: dict[str, dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []
        self._next = 0
        self.transport = httpx.MockTransport(self.handle)

    def add_post(self, post_id: str, text: str) -> dict[str, Any]:
        thing = {
            "id": post_id,
            "name": f"t3_{post_id}",
            "author": "customer",
            "subreddit": "acme",
            "title": "Acme lost my notes",
            "selftext": text,
            "permalink": f"/r/acme/comments/{post_id}/acme_lost_my_notes/",
            "created_utc": 1764590000.0,
        }
        self.things[thing["name"]] = thing
        return thing

    def ours(self) -> list[dict[str, Any]]:
        return [t for t in self.things.values() if t["author"] == self.account[0]]

    def handle(self, request: httpx.Request) -> httpx.Response:
        import base64
        import time
        from urllib.parse import parse_qs

        self.requests.append(request)
        if str(request.url) == f"{self.auth}/api/v1/access_token":
            basic = base64.b64encode(":".join(self.client).encode()).decode()
            if request.headers.get("authorization") != f"Basic {basic}":
                return _json(401, {"message": "Unauthorized", "error": 401})
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            if (form.get("username"), form.get("password")) != self.account:
                return _json(200, {"error": "invalid_grant"})
            return _json(
                200,
                {
                    "access_token": self.token,
                    "token_type": "bearer",
                    "expires_in": 86400,
                    "scope": "*",
                },
            )
        if request.headers.get("authorization") != f"bearer {self.token}":
            return _json(401, {"message": "Unauthorized", "error": 401})
        if request.method == "GET" and request.url.path == f"/user/{self.account[0]}/comments":
            newest = sorted(self.ours(), key=lambda t: t["created_utc"], reverse=True)
            children = [{"kind": "t1", "data": t} for t in newest[:25]]
            return _json(200, {"kind": "Listing", "data": {"children": children, "after": None}})
        if request.method != "POST" or request.url.path != "/api/comment":
            return _json(404, {"message": "Not Found", "error": 404})
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return _json(400, {"message": "Bad Request", "error": 400})
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        text, parent = form.get("text", ""), form.get("thing_id", "")
        if form.get("api_type") != "json":
            return _json(400, {"message": "Bad Request", "error": 400})
        if not text.strip():
            return _json(200, {"json": {"errors": [["NO_TEXT", "we need something here", "text"]]}})
        if len(text) > 10000:
            return _json(
                200, {"json": {"errors": [["TOO_LONG", "this is too long (max: 10000)", "text"]]}}
            )
        if parent not in self.things:
            return _json(
                200,
                {
                    "json": {
                        "errors": [
                            [
                                "DELETED_LINK",
                                "the link you are commenting on has been deleted",
                                "parent",
                            ]
                        ]
                    }
                },
            )
        refused = self.before()
        if refused is not None:
            return refused
        self._next += 1
        post_id = parent.split("_", 1)[1]
        thing = {
            "id": f"c{self._next}",
            "name": f"t1_c{self._next}",
            "author": self.account[0],
            "body": text,
            "parent_id": parent,
            "link_id": parent if parent.startswith("t3_") else None,
            "permalink": f"/r/acme/comments/{post_id}/acme_lost_my_notes/c{self._next}/",
            "created_utc": float(int(time.time())),
        }
        self.things[thing["name"]] = thing
        return self.after(
            _json(
                200, {"json": {"errors": [], "data": {"things": [{"kind": "t1", "data": thing}]}}}
            )
        )
