"""``earshot demo``: bundled real payloads replayed through the real pipeline, offline.

The files beside this module are real API answers (see PROVENANCE.md). A small
``httpx.MockTransport`` serves them at the paths the sources ask for, so the demo runs
exactly the code a real poll runs: sources, matching, dedupe, sentiment, outbox, rendering.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import httpx

EMPTY_LISTING = {"kind": "Listing", "data": {"children": [], "after": None, "before": None}}


def _load(name: str) -> Any:
    return json.loads(resources.files(__name__).joinpath(name).read_text("utf-8"))


def demo_config_text() -> str:
    return resources.files(__name__).joinpath("demo.toml").read_text("utf-8")


def demo_transport() -> httpx.MockTransport:
    """Answers the demo sources' requests from the bundled files."""
    story, comment = _load("hn_story.json"), _load("hn_comment.json")
    comments = _load("reddit_comments.json")
    posts = _load("reddit_posts.json")
    reviews = _load("appstore_reviews.json")

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/search_by_date"):
            if request.url.params.get("page", "0") != "0":
                return httpx.Response(200, json={"hits": [], "nbPages": 1, "nbHits": 0})
            hits = story["hits"] + comment["hits"]
            return httpx.Response(
                200, json={"hits": hits, "nbHits": len(hits), "nbPages": 1, "page": 0}
            )
        if path.endswith("/comments.json"):
            if request.url.params.get("after") or request.url.params.get("before"):
                return httpx.Response(200, json=EMPTY_LISTING)
            return httpx.Response(200, json=comments)
        if match := re.search(r"/r/([^/]+)/new\.json$", path):
            # the captured search listing's posts of this subreddit, as its listing
            if request.url.params.get("after") or request.url.params.get("before"):
                return httpx.Response(200, json=EMPTY_LISTING)
            sub = match.group(1).lower()
            children = [c for c in posts["data"]["children"] if c["data"]["subreddit"] == sub]
            listing = {**posts, "data": {**posts["data"], "children": children, "after": None}}
            return httpx.Response(200, json=listing)
        if match := re.search(r"/rss/customerreviews/page=(\d+)/", path):
            if match.group(1) == "1":
                return httpx.Response(200, json=reviews)
            return httpx.Response(200, json={"feed": {"author": {}}})
        return httpx.Response(404, json={"error": "not in the demo"})

    return httpx.MockTransport(handler)
