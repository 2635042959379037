"""The newcomer's first hour, timed on a running `make run`: in Chromium, log in as the demo admin, follow the home
page's walkthrough to the launch form of the demo project with a history, press Launch with the defaults, wait for
the run, generate the review with its defaults, and then let the three demo annotators judge the blind battles
through the JSON API by the demo's guideline (the shorter real answer: bench/simulated_annotators.py, the rule
the history was voted by). Prints the time of each stage and what the run and review pages say.

    make run &                                   # in a fresh clone: the demo loads with its history
    .venv/bin/python bench/newcomer_path.py      # about 20-30 minutes on 2 CPU cores

It only talks HTTP to the server (and runs `manage.py create_api_token` in this checkout for the annotators'
tokens, so run it from the checkout that `make run` serves).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

HISTORY_NAME = "Demo: concise answers (ready to tune)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--password", default="preftune-demo")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the run, and for the review")
    return parser.parse_args(argv)


class Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.last = self.started

    def mark(self, what: str, detail: str = "") -> float:
        now = time.monotonic()
        print(f"[{now - self.started:6.0f}s] {what}: {now - self.last:.0f}s{'  ' + detail if detail else ''}", flush=True)
        self.last = now
        return now


def _wait_page(page, url: str, done: str, timeout: float) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        page.goto(url)
        if page.locator(done).count():
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"Still waiting for {done} on {url} after {timeout:.0f}s")
        time.sleep(10)


def _api(url: str, token: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
                                     data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - the local server
        return json.loads(response.read())


def _judge_battles(base_url: str) -> dict[str, int]:
    """Each demo annotator in turn takes the next battle and votes by the demo's guideline."""
    from simulated_annotators import RULES, judge

    rule = RULES["length"]
    tokens = {}
    for name in ("annotator1", "annotator2", "annotator3"):
        made = subprocess.run([sys.executable, "manage.py", "create_api_token", name, "--name", "newcomer bench"],
                              cwd=ROOT, check=True, capture_output=True, text=True)
        tokens[name] = made.stdout.strip().splitlines()[-1]
    projects = _api(f"{base_url}/api/projects/", tokens["annotator1"])
    project = next(p for p in (projects.get("projects") or projects) if p["name"] == HISTORY_NAME)
    cast: dict[str, int] = {}
    active = list(tokens)
    rngs = {name: random.Random(i) for i, name in enumerate(tokens)}
    while active:
        for name in list(active):
            found = _api(f"{base_url}/api/projects/{project['id']}/next", tokens[name])
            task = found["task"]
            if task is None:
                active.remove(name)
                continue
            vote = judge(rule, task["left"]["text"], task["right"]["text"], rng=rngs[name])
            pick = {"a": "left", "b": "right"}.get(vote, vote)
            _api(base_url + task["vote_url"], tokens[name], {"pick": pick, "client_key": found["client_key"]})
            cast[pick] = cast.get(pick, 0) + 1
    return cast


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from playwright.sync_api import sync_playwright

    clock = Clock()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(120_000)
        page.goto(f"{args.url}/accounts/login/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", args.password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{args.url}/")
        print("walkthrough:", " | ".join(page.locator("[data-testid^=loop-step-]").all_inner_texts()).replace("\n", " "))
        page.locator("[data-testid=loop-step-2] a.button").click()
        page.wait_for_load_state()
        for testid in ("launch-validation", "launch-estimate", "launch-time", "launch-data-warning"):
            if page.locator(f"[data-testid={testid}]").count():
                print(f"launch form, {testid}: {page.locator(f'[data-testid={testid}]').first.inner_text()!r}")
        page.click("button[type=submit]:has-text('Launch')")
        page.wait_for_url(re.compile(r".*/runs/\d+/$"))
        run_url = page.url
        launched = clock.mark("launch", run_url)

        _wait_page(page, run_url, "[data-testid=run-status]:text-matches('Succeeded|Failed|Cancelled')", args.timeout)
        status = page.locator("[data-testid=run-status]").inner_text()
        clock.mark("training", f"{status}; step {page.locator('[data-testid=run-step]').inner_text()}")
        for testid in ("run-verdict", "validation-headline", "measured-on"):
            if page.locator(f"[data-testid={testid}]").count():
                print(f"run page, {testid}: {page.locator(f'[data-testid={testid}]').first.inner_text()!r}")
        if status != "Succeeded":
            raise SystemExit(f"The run ended {status}")

        review_url = run_url + "review/"
        page.goto(review_url)
        page.click("[data-testid=generate]")
        # The side-by-side fills in as batches finish: the review is done when its job is.
        _wait_page(page, review_url, "[data-testid=jobs] .status-succeeded, [data-testid=jobs] .status-failed",
                   args.timeout)
        reviewed = clock.mark("review outputs", page.locator("[data-testid=jobs] .status").first.inner_text())
        print(f"LAUNCH TO A FINISHED REVIEW: {reviewed - launched:.0f}s ({(reviewed - launched) / 60:.1f} minutes)")
        for testid in ("validation-headline", "movement", "degeneration", "cut-off", "lengths"):
            if page.locator(f"[data-testid={testid}]").count():
                print(f"review, {testid}: {page.locator(f'[data-testid={testid}]').first.inner_text()!r}")

        cast = _judge_battles(args.url)
        clock.mark("battles judged by the demo annotators", str(cast))
        page.goto(review_url)
        print(f"review, win-rate-headline: {page.locator('[data-testid=win-rate-headline]').inner_text()!r}")
        page.goto(f"{args.url}/")
        print("walkthrough:", " | ".join(page.locator("[data-testid^=loop-step-]").all_inner_texts()).replace("\n", " "))
        browser.close()


if __name__ == "__main__":
    main()
