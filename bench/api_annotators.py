"""Simulated annotators who work a project as a person would through the JSON API: each with an API token,
taking the next task and voting (or giving a thumb) by one hidden rule from bench/simulated_annotators.py.
Used by bench/alignment_loop.py and scripts/make_demo_history.py, after django.setup().
"""

from __future__ import annotations

import json
import random
from typing import Any

from simulated_annotators import Rule, is_degenerate, judge, rewrite, thumbs, vote_details


class Annotators:
    """Simulated annotators, each with an API token, voting through the JSON API by one hidden rule, with a
    strength, now and then a rationale, and a reading time (``vote_details``). ``noise`` is one share of flipped
    votes for all, or one per annotator. With ``edit_rate``, an annotator whose pick (or, on a tie or both-bad,
    the first readable answer) misses the rule rewrites it as a person would (``rewrite``) that share of the
    time, and sends the rewrite as the preferred answer; an answer cut off at the token limit is not rewritten (a
    person would finish it, which a rule cannot), the other one is."""

    def __init__(self, *, project: Any, count: int, rule: Rule, noise: float | list[float], seed: int,  # noqa: ANN401
                 edit_rate: float = 0.0, names: list[str] | None = None) -> None:
        from django.contrib.auth.models import User
        from django.test import Client

        from labeling.services import api_token_create

        self.rule = rule
        self.noises = list(noise) if isinstance(noise, list) else [noise] * count
        self.edit_rate = edit_rate
        self.edits = 0
        self.clients = []
        for i in range(count):
            user = User.objects.create_user((names or [])[i] if names else f"annotator{i + 1}", password="bench-only")
            project.members.add(user)
            token = api_token_create(user=user, name="bench")
            self.clients.append((Client(HTTP_AUTHORIZATION=f"Bearer {token}"), random.Random(seed * 1000 + i)))
        self.project = project

    def _pair_body(self, task: dict[str, Any], rng: random.Random, noise: float) -> dict[str, Any]:
        left, right = task["left"]["text"], task["right"]["text"]
        vote = judge(self.rule, left, right, rng=rng, noise=noise)
        details = vote_details(self.rule, left, right, vote, rng=rng)
        body: dict[str, Any] = {"pick": {"a": "left", "b": "right"}.get(vote, vote), "time_spent_ms": details.time_spent_ms}
        if details.strength is not None:
            body["strength"] = details.strength
        if details.rationale:
            body["rationale"] = details.rationale
        if self.edit_rate and rng.random() < self.edit_rate:
            # A person rewrites an answer they can finish reading: their pick if it is one, else the first such.
            sides = {"a": task["left"], "b": task["right"]}
            order = [vote] if vote in sides else []
            order += [side for side in sides if side not in order]
            readable = [sides[side]["text"] for side in order
                        if not sides[side].get("cut_off") and not is_degenerate(sides[side]["text"])]
            base = readable[0] if readable else None
            fixed = rewrite(self.rule, base) if base else None
            if fixed and fixed.strip() != base.strip() and not self.rule.satisfied(base):
                body["edited_text"] = fixed
                self.edits += 1
        return body

    def work(self, *, limit: int | None = None) -> dict[str, int]:
        """Each annotator in turn takes the next task and votes, until ``limit`` votes or no task is left."""
        cast: dict[str, int] = {}
        active = list(range(len(self.clients)))
        total = 0
        while active and (limit is None or total < limit):
            for index in list(active):
                if limit is not None and total >= limit:
                    break
                client, rng = self.clients[index]
                response = client.get(f"/api/projects/{self.project.pk}/next")
                if response.status_code != 200:
                    raise RuntimeError(f"GET next: {response.status_code} {response.content[:300]!r}")
                task = response.json()["task"]
                if task is None:
                    active.remove(index)
                    continue
                if task["kind"] == "pair":
                    body = self._pair_body(task, rng, self.noises[index])
                else:
                    up = thumbs(self.rule, task["completion"]["text"], rng=rng, noise=self.noises[index])
                    body = {"value": "up" if up else "down"}
                body["client_key"] = response.json()["client_key"]
                answer = client.post(task["vote_url"], data=json.dumps(body), content_type="application/json")
                if answer.status_code not in (200, 201):
                    raise RuntimeError(f"POST vote: {answer.status_code} {answer.content[:300]!r}")
                key = body.get("pick") or body["value"]
                cast[key] = cast.get(key, 0) + 1
                total += 1
        return cast
