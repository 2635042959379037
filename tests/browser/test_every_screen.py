"""In real Chromium, every screen an annotator or an admin uses, at a desktop width (1280 px) and a phone width
(390 px): no console error and no uncaught page error, no horizontal scrollbar, and no visible element that
sticks out past the right edge of the viewport. Each test saves a full-page screenshot to var/screenshots/.

The overflow rule: every rendered element whose box ends more than 1 px right of ``innerWidth`` fails the test,
unless an ancestor below <body> clips or scrolls sideways (``overflow-x`` other than ``visible``: a ``pre``, a
``.table-scroll`` wrapper). Such a box is judged instead of what it holds: it is an element like any other, so it
must fit, and what scrolls inside it by design does not count.

The clipping rule (CLIPPED, below): no text a reader cannot read whole. No box scrolls sideways at a desktop width;
no word and no button is cut by the side of a box at either width (on a phone a box may scroll a table's cells, a
chart or the header's links out of view, never prose or a button); no text is wider than the block that holds it.

The data is demo-like on purpose (labeling/demo's prompts, a tuned run with metrics, outputs, battles), so the
1280 px screenshots of the compare screen, run page, review page and launch form can go into docs/.

The demo world and a live server on it are built once for the module (building the world takes longer than
looking at a screen): the screens only read it, and the two tests that add rows add ones no other test counts.
The database is emptied after the module, as a transactional test would leave it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from labeling.importing import project_import
from labeling.management.commands.load_demo import COMPARE_GUIDELINES, DEMO_DIR, RATE_GUIDELINES
from labeling.models import Completion, PairTask, Project, Prompt
from tests.factories import PASSWORD, AdminFactory, ProjectFactory, UserFactory, make_pair_vote, make_rating, make_run
from training.models import BaseModel, GenerationJob, ModelVersion, RewardScore, RunMetric, TuningRun
from training.review.battles import battles_create
from training.review.versions import base_version_get_or_create

pytestmark = [pytest.mark.browser]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
VIEWPORTS = {1280: 900, 390: 844}

# Rendered elements past the right edge, outside any box that clips or scrolls sideways (see the module docstring).
OVERFLOWING = """() => {
  const limit = window.innerWidth + 1;
  const bounded = el => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      if (getComputedStyle(p).overflowX !== 'visible') return true;
    }
    return false;
  };
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
    + (typeof el.className === 'string' && el.className.trim() ? '.' + el.className.trim().split(/\\s+/).join('.') : '')
    + (el.dataset.testid ? `[data-testid=${el.dataset.testid}]` : '');
  const found = new Set();
  for (const el of document.body.getElementsByTagName('*')) {
    if (!el.checkVisibility({visibilityProperty: true, checkVisibilityCSS: true})) continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || box.right <= limit || bounded(el)) continue;
    found.add(el);
  }
  // Each is reported once, at its outermost offending element: the cells of a wide table add nothing.
  return [...found].filter(el => !found.has(el.parentElement)).map(el =>
    `${name(el)} ends at ${Math.round(el.getBoundingClientRect().right)} px: ${(el.innerText || '').trim().slice(0, 60)}`);
}"""
SCROLLS_SIDEWAYS = "() => document.documentElement.scrollWidth > document.documentElement.clientWidth"

# A box that scrolls sideways must say what it holds and take the keyboard (a screen reader announces the region).
UNLABELLED_SCROLL_BOXES = """() => [...document.querySelectorAll('.table-scroll, .table-wrap')]
  .filter(el => el.getAttribute('role') !== 'region' || !el.getAttribute('aria-label') || el.tabIndex !== 0)
  .map(el => `a sideways-scrolling box without a label: ${(el.innerText || '').trim().slice(0, 60)}`)"""

# Text a reader cannot read whole (issue 26: "v_pro", "(QL" on the models page, "Start annotating" on a phone):
# - a box that hides what is wider than it (overflow hidden or clip);
# - at a desktop width, any box that scrolls sideways (a `.table-scroll`, a `.table-wrap`, a `pre`): a desktop has
#   the room, and a box that scrolls there hides its last columns;
# - a word cut at the side of a box that clips or scrolls sideways, inside any such box: the reader sees "v_pro",
#   or the "S" of a button. One allowance, on a phone only, for what scrolls by design: a box may scroll a table's
#   columns or a chart out of view (issue 26: tables "scroll inside a labelled box on a phone"; the drift chart), and
#   the header's links scroll in a strip, so the side of such a box may cut a cell's own text, a chart's label or a
#   link of the strip; never prose (a paragraph, a list item, a heading, a notice, even inside a cell) and never a
#   button;
# - a button cut by, or hidden behind, the side of such a box, at any width;
# - text wider than the block that holds it (a path that does not wrap sticks out of its cell or card);
# - a word of up to 40 characters split across two lines. Longer tokens (paths, hashes, URLs) may wrap anywhere;
#   hyphens, slashes and commas are where a browser may break a word anyway.
CLIPPED = """(desktop) => {
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
    + (typeof el.className === 'string' && el.className.trim() ? '.' + el.className.trim().split(/\\s+/).join('.') : '')
    + (el.dataset && el.dataset.testid ? `[data-testid=${el.dataset.testid}]` : '');
  const visible = el => el.checkVisibility({visibilityProperty: true, checkVisibilityCSS: true});
  const styles = new Map();
  const style = el => { if (!styles.has(el)) styles.set(el, getComputedStyle(el)); return styles.get(el); };
  // The boxes that clip what they hold sideways, innermost first, up to <body>.
  const clippers = el => {
    const found = [];
    for (let p = el; p && p !== document.body; p = p.parentElement) {
      if (style(p).overflowX !== 'visible') found.push(p);
    }
    return found;
  };
  // What a box shows sideways: its padding box, scrollbars left out.
  const shown = box => {
    const rect = box.getBoundingClientRect();
    const left = rect.left + box.clientLeft;
    return {left, right: left + box.clientWidth};
  };
  const found = [];
  for (const el of document.body.getElementsByTagName('*')) {
    if (!visible(el) || ['CANVAS', 'svg', 'SELECT', 'INPUT', 'TEXTAREA', 'OPTION'].includes(el.tagName)) continue;
    const overflow = style(el).overflowX;
    // A 1 px box is text for screen readers only (visually hidden on purpose), not text cut off.
    const hides = ['hidden', 'clip'].includes(overflow) && el.clientWidth > 1;
    if (hides && el.scrollWidth > el.clientWidth + 1 && (el.innerText || '').trim()) {
      found.push(`clipped: ${name(el)} shows ${el.clientWidth} of ${el.scrollWidth} px: ${el.innerText.trim().slice(0, 60)}`);
    }
    // A desktop has the room for a table: one that scrolls sideways there hides its last columns.
    if (desktop && ['auto', 'scroll'].includes(overflow) && el.scrollWidth > el.clientWidth + 1) {
      found.push(`scrolls sideways at desktop width: ${name(el)} is ${el.scrollWidth} px in ${el.clientWidth} px`);
    }
    // A button cut by, or hidden behind, the side of a box that clips or scrolls: the reader cannot press what
    // they cannot see.
    if (el.matches('button, .button, input[type=submit]')) {
      const rect = el.getBoundingClientRect();
      for (const box of clippers(el.parentElement)) {
        const {left, right} = shown(box);
        if (rect.width > 0 && (rect.right > right + 1 || rect.left < left - 1)) {
          found.push(`button cut off by the side of ${name(box)}: ${(el.innerText || el.value || '').trim().slice(0, 40)}`);
          break;
        }
      }
    }
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  const block = el => {
    for (let p = el; p && p !== document.body; p = p.parentElement) {
      if (!['inline', 'contents'].includes(style(p).display)) return p;
    }
    return document.body;
  };
  const rects = (node, start, end) => {
    range.setStart(node, start);
    range.setEnd(node, end);
    return [...range.getClientRects()].filter(r => r.width > 0);
  };
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const parent = node.parentElement;
    if (!parent || !node.data.trim() || !visible(parent) || parent.closest('textarea, script, style, option')) continue;
    const boxes = clippers(parent);
    // Inside a 1 px box: text for screen readers only (visually hidden on purpose), not text cut off.
    const heard = boxes.some(box => box.clientWidth <= 1);
    const holder = block(parent);
    const holderScrolls = ['auto', 'scroll'].includes(style(holder).overflowX);
    const prose = holder.matches('p, li, h1, h2, h3, h4, h5, h6, dt, dd, figcaption, .notice, [role=alert]')
      || parent.closest('button, .button');
    const scrollsByDesign = box => !desktop && ['auto', 'scroll'].includes(style(box).overflowX) && !prose
      && (parent.closest('th, td') && box.contains(parent.closest('table'))
          || parent.closest('svg') && box.contains(parent.closest('svg'))
          || box.matches('header nav') && parent.closest('a'));
    const holderRight = holder.getBoundingClientRect().right;
    const tokens = /\\S+/g;
    for (let token; (token = tokens.exec(node.data));) {
      const whole = rects(node, token.index, token.index + token[0].length);
      const word = token[0].slice(0, 60);
      // Cut by the side of a box: part of the word shows, the rest is clipped or scrolled away.
      cut: for (const box of heard ? [] : boxes) {
        if (scrollsByDesign(box)) continue;
        const {left, right} = shown(box);
        for (const r of whole) {
          if ((r.left < right - 1 && r.right > right + 1) || (r.left < left - 1 && r.right > left + 1)) {
            found.push(`word cut off by the side of ${name(box)}: "${word}" in ${name(parent)}`);
            break cut;
          }
        }
      }
      // Wider than the block that holds it (unless that block scrolls sideways, judged above).
      if (!heard && !holderScrolls && whole.some(r => r.right > holderRight + 1)) {
        found.push(`text wider than its box: "${word}" sticks out of ${name(holder)}`);
      }
      if (token[0].length > 40 || parent.closest('pre')) continue;
      const pieces = /[^\\-\\/,]{2,}/g;
      for (let match; (match = pieces.exec(token[0]));) {
        const lines = new Set(rects(node, token.index + match.index, token.index + match.index + match[0].length)
          .map(r => Math.round(r.bottom)));
        if (lines.size > 1) found.push(`word split across lines: "${match[0]}" in ${name(parent)}`);
      }
    }
  }
  return [...new Set(found)];
}"""

# Columns of a table whose cells lie past the side of the box around it (issue 26: on a phone the dashboard's runs
# table showed Run, Status, Method and Data, the rest behind a sideways scroll): the columns' names.
COLUMNS_OUT_OF_VIEW = """(selector) => {
  const table = document.querySelector(selector);
  const box = table.parentElement;
  const edge = box.getBoundingClientRect().left + box.clientLeft + box.clientWidth;
  const heads = [...table.querySelectorAll('thead th')].map(th => th.textContent.trim());
  const hidden = new Set();
  for (const cell of table.querySelectorAll('tbody td')) {
    if (cell.getBoundingClientRect().right > edge + 1) {
      hidden.add(cell.dataset.label || heads[cell.cellIndex] || `column ${cell.cellIndex + 1}`);
    }
  }
  return [...hidden];
}"""


@dataclass
class Screen:
    page: object
    width: int
    problems: list[str] = field(default_factory=list)
    # Console errors that a screen expects, as (text, url) pairs; see test_a_403_page.
    expected_errors: set[tuple[str, str]] = field(default_factory=set)


@pytest.fixture(params=sorted(VIEWPORTS, reverse=True), ids=lambda width: f"{width}px")
def screen(request, browser):
    width = request.param
    context = browser.new_context(viewport={"width": width, "height": VIEWPORTS[width]})
    page = context.new_page()
    page.set_default_timeout(15_000)
    screen = Screen(page=page, width=width)

    def on_console(message) -> None:  # noqa: ANN001
        if message.type == "error" and (message.text, message.location.get("url", "")) not in screen.expected_errors:
            screen.problems.append(f"console error: {message.text} ({message.location.get('url')})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: screen.problems.append(f"page error: {error}"))
    yield screen
    context.close()


def _log_in(screen: Screen, server, username: str) -> None:
    page = screen.page
    page.goto(f"{server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/")


def _visit(screen: Screen, server, path: str, *, ready: str | None = None) -> None:
    screen.page.goto(f"{server.url}{path}")
    # htmx fetches some parts on load (the dashboard's runs table); run_charts.js fetches the metrics.
    screen.page.wait_for_load_state("networkidle")
    if ready:
        screen.page.wait_for_selector(ready)
    screen.page.evaluate("() => document.fonts.ready")


def _problems(screen: Screen, name: str) -> list[str]:
    """Save the screenshot; then every error logged since the last look, sideways scrolling, elements past the edge."""
    page = screen.page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{screen.width}.png"), full_page=True)
    problems, screen.problems[:] = list(screen.problems), []
    if page.evaluate(SCROLLS_SIDEWAYS):
        width = page.evaluate("() => document.documentElement.scrollWidth")
        problems.append(f"horizontal scrollbar: the page is {width} px wide in a {screen.width} px viewport")
    problems += [f"past the right edge: {line}" for line in page.evaluate(OVERFLOWING)]
    problems += page.evaluate(CLIPPED, screen.width >= 1024)
    problems += page.evaluate(UNLABELLED_SCROLL_BOXES)
    return [f"{name} at {screen.width} px: {problem}" for problem in problems]


def _check(screen: Screen, name: str) -> None:
    problems = _problems(screen, name)
    assert not problems, "\n".join(problems)


def _check_runs_table(screen: Screen, name: str) -> None:
    """The common checks, and every column of the runs table in view: a phone shows each run as a card."""
    problems = _problems(screen, name)
    hidden = screen.page.evaluate(COLUMNS_OUT_OF_VIEW, "[data-testid=runs-table]")
    if hidden:
        problems.append(f"{name} at {screen.width} px: the runs table hides {', '.join(hidden)} behind a sideways scroll")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- the demo world


@dataclass
class World:
    admin: object
    annotator: object
    compare: Project
    thumbs: Project
    run: TuningRun
    reward: TuningRun


HELDOUT_OUTPUTS = {
    "demo-037": (
        "A list and a tuple both store data in Python. Lists are very popular and used in many programs. Tuples are "
        "also used. The main difference is that lists use square brackets and tuples use round brackets.",
        "A list is mutable: you can add, remove or change items after creating it (`[1, 2, 3]`). A tuple is "
        "immutable: once made it cannot change (`(1, 2, 3)`). Use a tuple for fixed records and dictionary keys, a "
        "list for collections that grow or change.",
    ),
    "demo-038": (
        "Great question! Writing a cover letter can be hard. Be yourself, show your passion and good luck!",
        "1. Open with the specific role and one concrete reason you fit it, not a generic greeting.\n2. Keep it to one "
        "page and back each claim with an example: a project, a number, a result.",
    ),
    "demo-039": (
        "Air molecules scatter short (blue) wavelengths of sunlight far more strongly than long (red) ones: Rayleigh "
        "scattering. So blue light reaches your eyes from every direction of the sky.",
    ) * 2,
    "demo-040": (
        "You should pack water, food and a jacket. Also bring your phone.",
        "Water (about a litre per two hours), snacks, a rain layer and a warm layer, sun protection, a map or an "
        "offline map app, a charged phone, a small first-aid kit, and a headlamp in case you are out later than "
        "planned.",
    ),
}
# A held-out prompt as users paste them: a long URL with no break in it, and a long line of log output.
LONG_PROMPT_ID = "pasted-log"
LONG_PROMPT = (
    "Why does my job fail? It fetched https://storage.example.com/ml-team/datasets/customer-support/2026-11/"
    "conversations-shard-00017-of-00128.jsonl.gz?X-Amz-Signature=9f2c6b1e0d4a7f3b8c5e2d1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e "
    "and then printed: RuntimeError:CUDA_out_of_memory_while_allocating_tensor_of_shape_[4096,32000]_on_device_0_"
    "(GPU_0_has_a_total_capacity_of_23.64_GiB_of_which_41.06_MiB_is_free)"
)
HELDOUT_OUTPUTS[LONG_PROMPT_ID] = (
    "The file at https://storage.example.com/ml-team/datasets/customer-support/2026-11/conversations-shard-00017-of-"
    "00128.jsonl.gz could not be read; check the signature.",
    "The GPU ran out of memory: a batch of 4096 × 32000 logits does not fit in 41 MiB. Lower the batch size.",
)
LONG_VAR = "/srv/preftune/var/ml-team-production-cluster-eu-west-1"
# Where a worker saves an adapter: a run's uuid (32 hex digits, no hyphen to break at) and its attempt.
ADAPTER_PATH = "/srv/preftune/var/artifacts/runs/8f3c2a71d04be8e65c1f0a9d7b2e4c88/attempt-1/adapter"
LONG_MODEL_PATH = (
    "/srv/preftune/var/models/huggingface/hub/models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots/"
    "12fd25f77366fa6b3b4b768ec3050bf629380bac"
)
# Many runs, named as teams name them.
MORE_RUNS = [
    "helpful-dpo-r3 beta 0.2, lr 1e-4, SFT weight 2 (length rule, 200 votes)",
    "helpful-kto-thumbs-round-2-with-review-votes-included",
    "simpo gamma 1.0 (trying the reference-free loss on the same data)",
    "helpful-dpo-r4",
    "helpful-dpo-r5 (QLoRA 4-bit, 2 GPUs, FSDP)",
    "orpo-first-try",
]
SETTINGS = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 256, "seed": 0}
RUN_SETTINGS = {
    "method": "dpo", "loss_type": None, "beta": 0.1, "learning_rate": 5e-05, "num_train_epochs": 3.0, "max_steps": -1,
    "per_device_batch_size": 4, "gradient_accumulation_steps": 1, "validation_fraction": 0.15, "seed": 42,
    "max_length": 1024, "save_steps": 50,
    "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
}


def _demo_file(project: Project, filename: str) -> None:
    project_import(project=project, filename=filename, data=(DEMO_DIR / filename).read_bytes())


def _votes(project: Project, first, second) -> None:  # noqa: ANN001
    """Both annotators vote on all but the last six pairs: mostly agreeing, with one tie and three disagreements."""
    tasks = list(PairTask.objects.filter(project=project).order_by("pk"))[:-6]
    for n, task in enumerate(tasks):
        choice = "tie" if n == 3 else "a" if n % 3 else "b"
        disagree = n in (7, 12, 20)
        other = {"a": "b", "b": "a"}[choice] if disagree else choice
        rationale = "The other answer gets the key fact wrong, however confident it sounds." if disagree else ""
        make_pair_vote(task, first, choice, a_side="left" if n % 2 else "right", time_spent_ms=9_000 + 700 * n,
                       strength=1 + n % 3)
        make_pair_vote(task, second, other, a_side="right" if n % 2 else "left", time_spent_ms=14_000 + 300 * n,
                       rationale=rationale)


def _tuned_run(project: Project, admin) -> TuningRun:  # noqa: ANN001
    failed = make_run(project, status="failed")
    run = make_run(project, status="succeeded")
    # Real data, not tidy data (issue 26): the absolute paths a server has, which must wrap, not widen the page.
    BaseModel.objects.filter(pk=run.base_model_id).update(name="SmolLM2-135M-Instruct", path=LONG_MODEL_PATH)
    now = timezone.now()
    TuningRun.objects.filter(pk=failed.pk).update(
        name="helpful-dpo-r2 (lr 5e-4)", settings={**RUN_SETTINGS, "learning_rate": 5e-4}, step=12, total_steps=21,
        train_rows=22, validation_rows=4, attempt=1, created_by=admin, started_at=now - timedelta(minutes=20),
        finished_at=now - timedelta(minutes=18),
        error="Training stopped at step 12: the loss became NaN. Lower the learning rate (5e-4 is high for LoRA on a "
              "135M model) and retry; the run resumes from its last checkpoint.",
    )
    tuned = ModelVersion.objects.create(name="helpful-dpo-r1", base_model_id=run.base_model_id,
                                        adapter_path=ADAPTER_PATH)
    TuningRun.objects.filter(pk=run.pk).update(
        name="helpful-dpo-r1", settings=RUN_SETTINGS, step=21, total_steps=21, train_rows=22, validation_rows=4,
        attempt=1, created_by=admin, model_version=tuned, started_at=now - timedelta(hours=1, minutes=6),
        finished_at=now - timedelta(hours=1), output_dir="var/runs/run-2",
        outcome={
            "kept_step": 21, "best_metric": "rewards/accuracies", "steps": 21, "train_rows": 22, "validation_rows": 4,
            "validation": {"rewards/accuracies": 0.75, "rewards/margins": 0.62, "loss": 0.55},
            "final_train": {"rewards/accuracies": 1.0, "rewards/margins": 1.31, "loss": 0.31},
        },
    )
    run.snapshot.row_count = 26
    run.snapshot.summary = {"considered": 30, "rows": 26, "ties": 1, "both_bad": 0, "disagreements": 3, "incomplete": 6}
    run.snapshot.lineage = {"project": project.name, "guideline_version": 1, "annotators": {"maria": 30, "jonas": 30},
                            "agreement_alpha_pairs": 0.74, "includes_review_votes": False}
    run.snapshot.rows_hash = "3f9c2a71d04be8e65c1f0a9d7b2e4c88" * 2
    run.snapshot.save()
    metrics = []
    for step in range(1, 22):
        progress = step / 21
        metrics.append(RunMetric(run=run, step=step, values={
            "loss": round(0.69 - 0.36 * progress + 0.04 * (step % 3 - 1), 3),
            "rewards/accuracies": round(min(1.0, 0.5 + 0.45 * progress + 0.05 * (step % 2)), 3),
            "rewards/margins": round(1.3 * progress, 3), "rewards/chosen": round(0.4 * progress, 3),
            "rewards/rejected": round(-0.9 * progress, 3), "logps/chosen": round(-78 + 6 * progress, 2),
            "logps/rejected": round(-81 - 9 * progress, 2),
        }))
    for step, accuracy, margin, loss in ((7, 0.5, 0.11, 0.67), (14, 0.75, 0.38, 0.6), (21, 0.75, 0.62, 0.55)):
        metrics.append(RunMetric(run=run, step=step, split="eval", values={
            "eval_loss": loss, "eval_rewards/accuracies": accuracy, "eval_rewards/margins": margin}))
    RunMetric.objects.bulk_create(metrics)
    run.refresh_from_db()
    for n, name in enumerate(MORE_RUNS):
        other = make_run(project, status=("succeeded", "failed", "cancelled")[n % 3])
        TuningRun.objects.filter(pk=other.pk).update(
            name=name, settings=RUN_SETTINGS, step=21 - n, total_steps=21, train_rows=140 + n, validation_rows=34,
            created_by=admin, started_at=now - timedelta(days=n + 1), finished_at=now - timedelta(days=n + 1) + timedelta(minutes=14),
            output_dir=f"{LONG_VAR}/runs/run-{other.pk}",
            error="" if n % 3 == 0 else "Stopped by an admin before it finished; its last checkpoint is kept.",
        )
    return run


def _review(project: Project, run: TuningRun, admin, voters) -> None:  # noqa: ANN001
    base = base_version_get_or_create(base_model=run.base_model)
    tuned = run.model_version
    for prompt in Prompt.objects.filter(project=project, split="heldout"):
        base_text, tuned_text = HELDOUT_OUTPUTS[prompt.external_id]
        for version, text in ((base, base_text), (tuned, tuned_text)):
            Completion.objects.create(prompt=prompt, text=text, source="generated", model_version=version,
                                      model_name=version.name, generation_settings={**SETTINGS, "sample": 0})
    GenerationJob.objects.create(
        project=project, run=run, prompt_ids=[], settings={**SETTINGS, "n": 1}, purpose="review", status="succeeded",
        prompt_count=4, completions_total=8, completions_created=8, tasks_created=3, created_by=admin,
    )
    GenerationJob.objects.create(
        project=project, prompt_ids=[], settings={**SETTINGS, "n": 2}, purpose="candidates", status="succeeded",
        prompt_count=6, completions_total=12, completions_created=11, completions_skipped=1, tasks_created=5,
        created_by=admin, notes=["1 answer was cut off at 256 tokens and left out of pairs."],
    )
    battles_create(project=project, version_a=tuned, version_b=base, run=run, created_by=admin, seed=7)
    for n, task in enumerate(PairTask.objects.filter(project=project, purpose="review").order_by("pk")):
        tuned_choice = "a" if task.completion_a.model_version_id == tuned.pk else "b"
        for voter in voters:
            make_pair_vote(task, voter, "tie" if n == 2 and voter == voters[1] else tuned_choice)


def _reward_model(project: Project, run: TuningRun, admin) -> TuningRun:  # noqa: ANN001
    """A reward model trained in the project, its metrics, and its scores of the held-out outputs (made up, with the
    tuned outputs spread narrower than the base's; four pairs are too few for the page to call that a collapse)."""
    reward = make_run(project, status="succeeded", method="reward")
    now = timezone.now()
    TuningRun.objects.filter(pk=reward.pk).update(
        name="helpful-reward-r1", settings={**RUN_SETTINGS, "method": "reward", "center_rewards": 0.01}, step=14,
        total_steps=14, train_rows=22, validation_rows=8, attempt=1, created_by=admin, started_at=now - timedelta(minutes=50),
        finished_at=now - timedelta(minutes=45), output_dir="var/runs/run-3",
        outcome={
            "kept_step": 14, "steps": 14, "train_rows": 22, "validation_rows": 8,
            "validation": {"accuracy": 0.875, "margin": 1.9, "loss": 0.31},
            "final_train": {"accuracy": 1.0, "margin": 2.4, "loss": 0.12},
            "reward_model": {"correct": 7, "pairs": 8, "ties": 0, "accuracy": 0.875, "interval": [0.529, 0.978]},
        },
    )
    metrics = []
    for step in range(1, 15):
        progress = step / 14
        metrics.append(RunMetric(run=reward, step=step, values={
            "loss": round(0.69 - 0.5 * progress, 3), "accuracy": round(0.5 + 0.5 * progress, 3),
            "margin": round(2.4 * progress, 3), "min_reward": round(-2 * progress, 3), "mean_reward": 0.05,
            "max_reward": round(2 * progress, 3),
        }))
    for step, accuracy in ((7, 0.75), (14, 0.875)):
        metrics.append(RunMetric(run=reward, step=step, split="eval", values={"eval_accuracy": accuracy, "eval_loss": 0.4}))
    RunMetric.objects.bulk_create(metrics)
    for n, completion in enumerate(Completion.objects.filter(prompt__project=project, model_version__isnull=False)):
        tuned = completion.model_version_id == run.model_version_id
        RewardScore.objects.create(reward_run=reward, completion=completion,
                                   score=(1.2 + 0.05 * (n % 3)) if tuned else (-1.5 + 0.9 * (n % 4)))
    reward.refresh_from_db()
    return reward


@pytest.fixture(scope="module")
def _demo(django_db_setup, django_db_blocker):  # noqa: ANN202
    from pytest_django.live_server_helper import LiveServer

    with django_db_blocker.unblock():
        world = _build_world()
        live = LiveServer("localhost")
        try:
            yield world, live
        finally:
            live.stop()
            call_command("flush", interactive=False, verbosity=0)


@pytest.fixture
def server(_demo, django_db_blocker):  # noqa: ANN001, ANN201
    """The module's live server; the test may read and add rows (in autocommit, as the server sees them)."""
    with django_db_blocker.unblock():
        yield _demo[1]


@pytest.fixture
def world(_demo) -> World:
    return _demo[0]


def _build_world() -> World:
    admin = AdminFactory(username="admin")
    maria, jonas, priya = (UserFactory(username=name) for name in ("maria", "jonas", "priya"))
    compare = ProjectFactory(
        name="Helpful answers", overlap=2, guidelines=COMPARE_GUIDELINES,
        description="Pairs of answers to everyday questions: one good, one flawed. Pick the better one.",
    )
    compare.members.add(maria, jonas, priya)
    _demo_file(compare, "compare.jsonl")
    Prompt.objects.create(project=compare, external_id=LONG_PROMPT_ID, split="heldout",
                          messages=[{"role": "user", "content": LONG_PROMPT}])
    _votes(compare, maria, jonas)
    run = _tuned_run(compare, admin)
    _review(compare, run, admin, [maria, jonas])
    reward = _reward_model(compare, run, admin)

    thumbs = ProjectFactory(name="Thumbs: short answers", mode="rate", overlap=1, guidelines=RATE_GUIDELINES,
                            description="Single answers to rate thumbs up or down.")
    thumbs.members.add(maria, priya)
    long_name = ProjectFactory(
        name="Customer-support assistant, round 3: tone and length preferences (EN/DE), second labelling pass",
        description="A project with the kind of name teams give them.",
    )
    long_name.members.add(priya)
    _demo_file(thumbs, "rate.jsonl")
    for n, task in enumerate(thumbs.rate_tasks.order_by("pk")[:8]):
        make_rating(task, maria, "down" if n in (2, 5) else "up", time_spent_ms=6_000)
    return World(admin=admin, annotator=priya, compare=compare, thumbs=thumbs, run=run, reward=reward)


# ---------------------------------------------------------------- annotator screens


@pytest.mark.parametrize("role", ["annotator", "admin"])
def test_the_project_list(screen, server, world, role):
    # An admin's rows carry a Dashboard button beside Start annotating (issue 26: both were cut off on a phone).
    _log_in(screen, server, getattr(world, role).username)
    _check(screen, "home" if role == "annotator" else "home-admin")


def test_the_compare_screen(screen, server, world):
    _log_in(screen, server, world.annotator.username)
    _visit(screen, server, f"/projects/{world.compare.pk}/", ready="body[data-keys-ready]")
    assert screen.page.locator("#card form.vote-form").count() == 1
    _check(screen, "compare")


def test_the_thumbs_screen(screen, server, world):
    _log_in(screen, server, world.annotator.username)
    _visit(screen, server, f"/projects/{world.thumbs.pk}/", ready="body[data-keys-ready]")
    assert screen.page.locator("[data-testid=completion-text]").count() == 1
    _check(screen, "thumbs")


def test_the_login_page(screen, server):
    _visit(screen, server, "/accounts/login/")
    _check(screen, "login")


def test_a_403_page(screen, server, world):
    """An annotator opening an admin page. Chromium logs every 4xx document as a console error ("Failed to load
    resource"); that one message, for this page's own address, is what the screen is about, so it alone is expected."""
    _log_in(screen, server, world.annotator.username)
    url = f"{server.url}/projects/{world.compare.pk}/dashboard/"
    screen.expected_errors.add(("Failed to load resource: the server responded with a status of 403 (Forbidden)", url))
    response = screen.page.goto(url)
    assert response.status == 403
    assert screen.page.locator("h1").inner_text() == "Not allowed"
    _check(screen, "403")


# ---------------------------------------------------------------- admin screens


def test_the_project_dashboard(screen, server, world):
    _log_in(screen, server, world.admin.username)
    _visit(screen, server, f"/projects/{world.compare.pk}/dashboard/", ready="[data-testid=runs-table]")
    _check_runs_table(screen, "dashboard")


# Admin screens whose only check is the common one: they fit, with no console error.
PLAIN_ADMIN_SCREENS = {"import": "import/", "export": "export/", "settings": "settings/", "candidates": "candidates/",
                       "launch": "runs/new/"}


@pytest.mark.parametrize("name", sorted(PLAIN_ADMIN_SCREENS))
def test_a_plain_admin_screen(screen, server, world, name):
    _log_in(screen, server, world.admin.username)
    _visit(screen, server, f"/projects/{world.compare.pk}/{PLAIN_ADMIN_SCREENS[name]}")
    _check(screen, name)


def test_the_disagreements(screen, server, world):
    _log_in(screen, server, world.admin.username)
    _visit(screen, server, f"/projects/{world.compare.pk}/disagreements/")
    assert screen.page.locator("[data-testid=disagreement]").count() == 3
    _check(screen, "disagreements")


def test_the_runs_list(screen, server, world):
    _log_in(screen, server, world.admin.username)
    _visit(screen, server, f"/projects/{world.compare.pk}/runs/")
    # the failed and tuned DPO runs, the reward model, and the runs with long names
    assert screen.page.locator("[data-testid=runs-table] tbody tr").count() == 3 + len(MORE_RUNS)
    _check_runs_table(screen, "runs")


def test_the_run_page(screen, server, world):
    _log_in(screen, server, world.admin.username)
    _visit(screen, server, f"/runs/{world.run.pk}/")
    screen.page.wait_for_function(
        "() => [...document.querySelectorAll('#charts figure:not([hidden]) canvas')].every(c => Chart.getChart(c))"
    )
    screen.page.wait_for_timeout(1_200)  # Chart.js animates the lines in; the screenshot wants them drawn
    _check(screen, "run")


def test_the_header_stays_one_bar(screen, server, world):
    # Issue 26: at 390 px the navigation wrapped into a 146 px header above every admin page.
    _log_in(screen, server, world.admin.username)
    _visit(screen, server, f"/runs/{world.run.pk}/review/")
    height = screen.page.evaluate("() => document.querySelector('header.topbar').getBoundingClientRect().height")
    assert height <= 100, f"the header is {height:.0f} px tall at {screen.width} px"


def test_the_review_page(screen, server, world):
    _log_in(screen, server, world.admin.username)
    _visit(screen, server, f"/runs/{world.run.pk}/review/")
    # Issue 26: at 390 px the side by side was three columns of ~100 px in a page 25,000 px tall; a phone stacks them.
    narrowest = screen.page.evaluate(
        "() => Math.min(...[...document.querySelectorAll('[data-testid=side-by-side] td.text')]"
        ".map(td => td.getBoundingClientRect().width))"
    )
    assert narrowest >= min(300, screen.width - 60), f"a side-by-side text column is {narrowest:.0f} px wide"
    assert screen.page.locator("[data-testid=side-by-side] tr[data-prompt]").count() == 5
    assert screen.page.locator("[data-testid=reward-table] .histogram").count() == 2
    assert screen.page.locator("[data-testid=reward-difference]").is_visible()
    _check(screen, "review")


def test_the_reward_model_page(screen, server, world):
    _log_in(screen, server, world.admin.username)
    _visit(screen, server, f"/runs/{world.reward.pk}/")
    screen.page.wait_for_function(
        "() => [...document.querySelectorAll('#charts figure:not([hidden]) canvas')].every(c => Chart.getChart(c))"
    )
    assert "88% held-out pairwise accuracy" in screen.page.locator("[data-testid=reward-heldout]").inner_text()
    screen.page.wait_for_timeout(1_200)
    _check(screen, "reward-run")


def test_the_battles_page(screen, server, world):
    _log_in(screen, server, world.admin.username)
    _visit(screen, server, f"/runs/{world.run.pk}/battles/")
    assert screen.page.locator("[data-testid=win-tie-loss]").inner_text() == "7 / 1 / 0"
    _check(screen, "battles")


def test_the_leaderboard(screen, server, world):
    _log_in(screen, server, world.admin.username)
    _visit(screen, server, f"/projects/{world.compare.pk}/leaderboard/")
    assert screen.page.locator("[data-testid=leaderboard] tr[data-version]").count() == 2
    _check(screen, "leaderboard")


def test_the_playground(screen, server, world):
    from training.models import PlaygroundAnswer, PlaygroundRequest

    question = PlaygroundRequest.objects.filter(project=world.compare, created_by=world.admin).first()
    if question is None:
        question = PlaygroundRequest.objects.create(
            project=world.compare, created_by=world.admin, messages=[{"role": "user", "content": LONG_PROMPT}],
            settings={**SETTINGS, "n": 1}, status="succeeded", engine="transformers float32",
        )
        for n, version in enumerate(ModelVersion.objects.filter(base_model=world.run.base_model).order_by("adapter_path")):
            text = HELDOUT_OUTPUTS[LONG_PROMPT_ID][n % 2]
            PlaygroundAnswer.objects.create(request=question, model_version=version, position=n, text=text,
                                            finish_reason="length" if n else "stop", tokens=57, seconds=1.9)
    _log_in(screen, server, world.admin.username)
    _visit(screen, server, f"/projects/{world.compare.pk}/playground/")
    problems = _problems(screen, "playground")
    _visit(screen, server, f"/playground/{question.pk}/")
    assert screen.page.locator("[data-testid=playground-answer]").count() == 2
    problems += _problems(screen, "playground-question")
    assert not problems, "\n".join(problems)


def test_the_django_admin_prompt_list(screen, server, world):
    _log_in(screen, server, world.admin.username)
    _visit(screen, server, "/admin/labeling/prompt/")
    _check(screen, "admin-prompts")


# ---------------------------------------------------------------- an empty project


EMPTY_ADMIN_SCREENS = {
    "dashboard": "/projects/{pk}/dashboard/",
    "import": "/projects/{pk}/import/",
    "export": "/projects/{pk}/export/",
    "disagreements": "/projects/{pk}/disagreements/",
    "candidates": "/projects/{pk}/candidates/",
    "runs": "/projects/{pk}/runs/",
    "launch": "/projects/{pk}/runs/new/",
    "leaderboard": "/projects/{pk}/leaderboard/",
}


def test_an_empty_project_s_screens(screen, server):
    """No prompts, runs, jobs or battles: each screen still fits and says what to do next (tests/test_empty_states.py
    checks the words)."""
    annotator = UserFactory(username="new-annotator")
    project = ProjectFactory(name=f"Empty project ({screen.width} px)")
    project.members.add(annotator)
    _log_in(screen, server, annotator.username)
    problems = _problems(screen, "empty-home")
    _visit(screen, server, f"/projects/{project.pk}/", ready="body[data-keys-ready]")
    problems += _problems(screen, "empty-compare")

    screen.page.context.clear_cookies()
    _log_in(screen, server, AdminFactory(username="new-admin").username)
    for name, path in EMPTY_ADMIN_SCREENS.items():
        _visit(screen, server, path.format(pk=project.pk))
        problems += _problems(screen, f"empty-{name}")
    assert not problems, "\n".join(problems)


def test_the_base_models_page(screen, server, world):
    # A measured model (a 1.7B-sized row with a failed download beside it): the memory table is the widest thing here.
    BaseModel.objects.get_or_create(name="A measured model", defaults=dict(
        path="/models/measured", status="ready", architecture="LlamaForCausalLM",
        parameters=1_711_376_384, quantizable_parameters=1_610_612_736, context_length=8192,
        linear_layers=["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"],
    ))
    BaseModel.objects.get_or_create(name="Qwen2.5-7B-Instruct (QLoRA 4-bit, for the 24 GB cards)", defaults=dict(
        path="/srv/preftune/var/models/huggingface/hub/models--Qwen--Qwen2.5-7B-Instruct/snapshots/"
             "a09a35458c702b33eeacc393d103063234e8bc28", hub_id="Qwen/Qwen2.5-7B-Instruct", status="ready",
        architecture="Qwen2ForCausalLM", parameters=7_615_616_512, quantizable_parameters=6_525_616_128,
        context_length=32768, linear_layers=["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"],
    ))
    BaseModel.objects.get_or_create(name="A failed download", defaults=dict(
        path="/models/hub/x--y", hub_id="x/y", status="failed",
        error="The worker could not download x/y from the Hugging Face Hub (offline).",
    ))
    _log_in(screen, server, world.admin.username)
    _visit(screen, server, "/models/")
    assert screen.page.locator("[data-testid=model-memory]").count() >= 1
    _check(screen, "base-models")
