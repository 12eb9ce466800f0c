"""The metrics dashboard picture (issue 15, item 3): a real run, scraped over time, drawn as the Grafana dashboard
(docs/grafana/hipaamail.json) would draw it, saved as docs/screenshots/metrics-dashboard.png.

    .venv/bin/python bench/metrics_dashboard.py [--patients 1000] [--rate 50] [--out docs/screenshots/metrics-dashboard.png]

Creates (dropping it first) a database of its own (`--database`, default `hipaamail_bench_metrics`), synthetic
patients covered for one marketing purpose, a few revoked before the launches and a few never authorized, a few
suppressed, and a few whose address the SMTP server refuses with 550. Starts an SMTP server (aiosmtpd) on a free
loopback port and two real Celery workers (`-Q campaigns`, prefork, 2 processes each) on Redis
(`--broker`, default redis://127.0.0.1:6379/4) with the global rate limit at `--rate` messages a second and
prometheus_client's multiprocess mode (a fresh PROMETHEUS_MULTIPROC_DIR shared by every process: ADR 0018).
Then launches three campaigns some seconds apart, revokes some patients while the second one sends, and scrapes
what /metrics serves (`observability.metrics.metrics_render`, the multiprocess samples and the scrape-time queue
depths) every half second until everything is sent. The samples are drawn into an SVG (rates from the counters,
quantiles from the histograms' buckets, as PromQL's rate() and histogram_quantile() compute them) and Chromium
(Playwright, /usr/bin/chromium) renders it to the PNG. The raw scrapes are kept as JSON (`--samples`, default
var/metrics-dashboard.json); `--from-samples FILE` draws them again without a run.
"""
import argparse
import html
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.send_campaign import free_port, recreate_database  # after sys.path names the project

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


# --- The run -------------------------------------------------------------------------------------------------


class RefusingSink:
    """An SMTP server that accepts every message but those to `refused`, which get 550 at RCPT TO."""

    def __init__(self, refused: set[str]):
        self.refused = refused
        self.accepted = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refused:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.accepted += 1
        return "250 accepted"


def scenario_prepare(*, patients: int, campaigns: int):
    """Patients, their authorizations, the odd ones out, approved campaigns. Returns (campaign ids, refused
    addresses, patient ids to revoke mid-send, purpose id)."""
    from bench.send_campaign import covered_patients_make
    from consent.models import Patient
    from consent.services.authorizations import authorization_revoke
    from consent.services.suppressions import suppression_record
    from consent.tests.factories import patient_make

    purpose = covered_patients_make(patients)
    ids = list(Patient.objects.order_by("id").values_list("id", flat=True))
    # Never authorized (blocked at launch: no_authorization): patients of the segment with no authorization.
    for _ in range(patients // 40):
        patient_make()
    # Revoked before the launches (blocked at launch: revoked).
    for pid in ids[7::60]:
        authorization_revoke(actor=None, patient_id=pid, purpose_id=purpose.pk, channel="portal")
    # Suppressed after an earlier hard bounce (blocked at launch: suppressed).
    for patient in Patient.objects.filter(id__in=ids[13::90]):
        suppression_record(actor=None, email=patient.email, reason="hard_bounce", smtp_code="550")
    refused = {patient.email for patient in Patient.objects.filter(id__in=ids[29::75])}
    revoke_later = ids[3::45]
    campaign_ids = [campaign_make_approved(purpose=purpose, n=n).pk for n in range(campaigns)]
    return campaign_ids, refused, revoke_later, purpose.pk


def campaign_make_approved(*, purpose, n: int):
    from campaigns.tests.factories import campaign_approved_make

    return campaign_approved_make(purpose=purpose, name=f"Autumn news {n + 1}")


def workers_start(*, env: dict, count: int) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "hipaamail", "worker", "-Q", "campaigns", "-c", "2",
             "-n", f"metrics{i}@%h", "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
            cwd=ROOT, env=env, start_new_session=True,
        )
        for i in range(count)
    ]


def scrape_parse(text: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("hipaamail_"):
            continue
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def run(args) -> list[dict]:
    import django

    django.setup()
    import logging

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd narrates every command at INFO
    from aiosmtpd.controller import Controller
    from django.conf import settings

    from campaigns.models import Delivery
    from campaigns.services.launch import campaign_launch
    from consent.services.authorizations import authorization_revoke
    from observability.metrics import metrics_render

    campaign_ids, refused, revoke_later, purpose_id = scenario_prepare(patients=args.patients, campaigns=3)
    sink = RefusingSink(refused)
    controller = Controller(sink, hostname="127.0.0.1", port=free_port(), server_hostname="sink.test")
    controller.start()
    env = {**os.environ, "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(controller.port)}
    from celery import current_app

    with current_app.connection_for_write() as connection:  # a clean broker db: only this run's messages
        for queue in ("campaigns", "transactional"):
            connection.default_channel.queue_purge(queue) if _queue_exists(connection, queue) else None
    workers = workers_start(env=env, count=2)
    samples: list[dict] = []
    start = time.monotonic()
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            samples.append({"t": round(time.monotonic() - start, 2), **scrape_parse(metrics_render().decode())})
            stop.wait(args.interval)

    thread = threading.Thread(target=sampler, daemon=True)
    try:
        time.sleep(4)  # the workers start
        thread.start()
        time.sleep(3)
        for index, campaign_id in enumerate(campaign_ids):
            campaign_launch(actor=None, campaign_id=campaign_id)
            if index == 1:
                time.sleep(2)
                for pid in revoke_later:  # while the second campaign sends: blocked by the sender's re-check
                    authorization_revoke(actor=None, patient_id=pid, purpose_id=purpose_id, channel="one_click")
                time.sleep(4)
            else:
                time.sleep(6)
        deadline = time.monotonic() + args.timeout
        while Delivery.objects.filter(status=Delivery.Status.QUEUED).exists():
            if time.monotonic() > deadline:
                raise SystemExit("deliveries still queued after --timeout seconds")
            time.sleep(0.5)
        time.sleep(4)  # the tail: the rates fall back to zero
    finally:
        stop.set()
        thread.join(timeout=5)
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
        controller.stop()
    print(f"accepted by the SMTP server: {sink.accepted}; samples: {len(samples)}; "
          f"statuses: {_status_counts()}; rate limit {settings.HIPAAMAIL_RATE_LIMIT}/s")
    return samples


def _queue_exists(connection, queue: str) -> bool:
    try:
        connection.default_channel.queue_declare(queue=queue, passive=True)
    except Exception:  # noqa: BLE001 - Redis: no key for an empty queue
        return False
    return True


def _status_counts():
    from django.db.models import Count

    from campaigns.models import Delivery

    rows = Delivery.objects.values_list("status", "block_reason").annotate(n=Count("id")).order_by("status")
    return {f"{status}{':' + reason if reason else ''}": n for status, reason, n in rows}


# --- From samples to series (what PromQL would compute) ------------------------------------------------------


def series_sum(sample: dict, name: str, **match) -> float:
    total = 0.0
    for key, value in sample.items():
        metric, _, labels = key.partition("{")
        if metric != name:
            continue
        pairs = dict(pair.split("=", 1) for pair in labels.rstrip("}").split(",") if pair)
        if all(pairs.get(k) == v for k, v in match.items()):
            total += value
    return total


def label_values(samples: list[dict], name: str, label: str) -> list[str]:
    found = set()
    for sample in samples:
        for key in sample:
            metric, _, labels = key.partition("{")
            if metric == name:
                pairs = dict(pair.split("=", 1) for pair in labels.rstrip("}").split(",") if pair)
                if label in pairs:
                    found.add(pairs[label])
    return sorted(found)


def rate(samples: list[dict], name: str, *, over: float = 2.0, **match) -> list[tuple[float, float]]:
    """Per-second increase over the trailing `over` seconds, as rate(name[over]) would give it."""
    points = []
    for index, sample in enumerate(samples):
        earlier = next((s for s in samples[: index + 1] if s["t"] >= sample["t"] - over), sample)
        span = sample["t"] - earlier["t"]
        value = (series_sum(sample, name, **match) - series_sum(earlier, name, **match)) / span if span else 0.0
        points.append((sample["t"], max(0.0, value)))
    return points


def gauge(samples: list[dict], name: str, **match) -> list[tuple[float, float]]:
    return [(sample["t"], series_sum(sample, name, **match)) for sample in samples]


def quantile(samples: list[dict], name: str, q: float, *, over: float = 4.0) -> list[tuple[float, float | None]]:
    """histogram_quantile(q, rate(name_bucket[over])): linear interpolation inside the bucket q falls in."""
    points = []
    for index, sample in enumerate(samples):
        earlier = next((s for s in samples[: index + 1] if s["t"] >= sample["t"] - over), sample)
        buckets = []
        for key, value in sample.items():
            metric, _, labels = key.partition("{")
            if metric == f"{name}_bucket":
                le = dict(pair.split("=", 1) for pair in labels.rstrip("}").split(","))["le"]
                buckets.append((float(le), value - earlier.get(key, 0.0)))
        buckets.sort()
        total = buckets[-1][1] if buckets else 0
        if total <= 0:
            points.append((sample["t"], None))
            continue
        rank, lower, below = q * total, 0.0, 0.0
        value = None
        for bound, count in buckets:
            if count >= rank:
                if bound == float("inf"):
                    value = lower
                else:
                    value = lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 1)
                break
            lower, below = bound, count
        points.append((sample["t"], value))
    return points


# --- Drawing ---------------------------------------------------------------------------------------------------

PALETTE = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff", "#fade2a", "#ca95e5"]
PANEL_W, PANEL_H = 560, 250
PAD_L, PAD_R, PAD_T, PAD_B = 58, 16, 34, 60


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(value))) / 10 if value >= 1 else 1
    for step in (1, 2, 2.5, 5, 7.5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return value


def panel_svg(x: int, y: int, title: str, unit: str, lines: list[tuple[str, list[tuple[float, float | None]]]],
              t_max: float, *, threshold: tuple[str, float] | None = None) -> str:
    plot_w, plot_h = PANEL_W - PAD_L - PAD_R, PANEL_H - PAD_T - PAD_B
    values = [v for _, points in lines for _, v in points if v is not None]
    if threshold:
        values.append(threshold[1])
    y_max = _nice_max(max(values) * 1.1 if values else 1)
    out = [f'<g transform="translate({x},{y})">',
           f'<rect width="{PANEL_W}" height="{PANEL_H}" rx="3" fill="#181b1f" stroke="#2c3235"/>',
           f'<text x="12" y="21" class="title">{html.escape(title)}</text>']
    for i in range(5):
        gy = PAD_T + plot_h - plot_h * i / 4
        label = y_max * i / 4
        number = f"{label:,.0f}" if label >= 1000 else f"{label:.3g}"
        text = f"{number}{unit}"
        out.append(f'<line x1="{PAD_L}" x2="{PAD_L + plot_w}" y1="{gy:.1f}" y2="{gy:.1f}" class="grid"/>')
        out.append(f'<text x="{PAD_L - 6}" y="{gy + 4:.1f}" class="axis" text-anchor="end">{text}</text>')
    for i in range(7):
        t = t_max * i / 6
        gx = PAD_L + plot_w * i / 6
        out.append(f'<text x="{gx:.1f}" y="{PAD_T + plot_h + 15}" class="axis" text-anchor="middle">{t:.0f}s</text>')
    if threshold:
        ty = PAD_T + plot_h - plot_h * threshold[1] / y_max
        out.append(f'<line x1="{PAD_L}" x2="{PAD_L + plot_w}" y1="{ty:.1f}" y2="{ty:.1f}" class="threshold"/>')
        out.append(f'<text x="{PAD_L + plot_w - 4}" y="{ty - 5:.1f}" class="thresholdlabel" text-anchor="end">'
                   f'{html.escape(threshold[0])}</text>')
    rows, row_x = 1, PAD_L
    for name, _ in lines:  # how many rows the legend takes, so that it ends at the panel's bottom
        if row_x + 22 + 6.4 * len(name) > PANEL_W - 8:
            rows, row_x = rows + 1, PAD_L
        row_x += 22 + 6.4 * len(name)
    legend_x, legend_y = PAD_L, PANEL_H - 10 - 14 * rows
    for index, (name, points) in enumerate(lines):
        color = PALETTE[index % len(PALETTE)]
        path, pen = [], "M"
        for t, v in points:
            if v is None:
                pen = "M"
                continue
            px = PAD_L + plot_w * (t / t_max if t_max else 0)
            py = PAD_T + plot_h - plot_h * min(v, y_max) / y_max
            path.append(f"{pen}{px:.1f},{py:.1f}")
            pen = "L"
        if path:
            out.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="1.8"/>')
        width = 22 + 6.4 * len(name)
        if legend_x + width > PANEL_W - 8:  # the next row of the legend
            legend_x, legend_y = PAD_L, legend_y + 14
        out.append(f'<rect x="{legend_x}" y="{legend_y}" width="12" height="4" fill="{color}"/>')
        out.append(f'<text x="{legend_x + 16}" y="{legend_y + 6}" class="legend">{html.escape(name)}</text>')
        legend_x += width
    out.append("</g>")
    return "\n".join(out)


def dashboard_svg(samples: list[dict], *, window: float) -> str:
    t_max = samples[-1]["t"] if samples else 1
    blocked = "hipaamail_deliveries_blocked_total"
    reasons = [(r, s) for s in ("launch", "send") for r in label_values(samples, blocked, "reason")
               if any(series_sum(x, blocked, reason=r, stage=s) for x in samples[-1:])]
    queues = label_values(samples, "hipaamail_broker_queue_messages", "queue")
    panels = [
        ("Messages sent", "/s", [("sent", rate(samples, "hipaamail_deliveries_sent_total"))], None),
        ("Blocked by reason", "/s",
         [(f"{reason} ({stage})", rate(samples, blocked, reason=reason, stage=stage)) for reason, stage in reasons], None),
        ("Bounces and complaints", "/s",
         [("hard", rate(samples, "hipaamail_deliveries_bounced_total", kind="hard")),
          ("soft", rate(samples, "hipaamail_deliveries_bounced_total", kind="soft")),
          ("complaints", rate(samples, "hipaamail_complaints_total"))], None),
        ("Rate-limit waits", "/s", [("waits", rate(samples, "hipaamail_send_rate_limit_waits_total"))], None),
        ("Queue depth", "",
         [("deliveries queued (database)", gauge(samples, "hipaamail_deliveries_queued"))]
         + [(f"broker: {queue}", gauge(samples, "hipaamail_broker_queue_messages", queue=queue)) for queue in queues],
         None),
        ("Batch duration", "s",
         [("p50", quantile(samples, "hipaamail_send_batch_duration_seconds", 0.5)),
          ("p95", quantile(samples, "hipaamail_send_batch_duration_seconds", 0.95))], None),
        ("Check-to-send window", "s",
         [("p50", quantile(samples, "hipaamail_send_check_to_send_seconds", 0.5)),
          ("p99", quantile(samples, "hipaamail_send_check_to_send_seconds", 0.99)),
          ("max (bucket bound)", quantile(samples, "hipaamail_send_check_to_send_seconds", 1.0))],
         (f"SEND_CHECK_WINDOW {window:g}s", window)),
        ("Totals (counters)", "",
         [("sent", gauge(samples, "hipaamail_deliveries_sent_total")),
          ("blocked", gauge(samples, blocked)),
          ("bounced", gauge(samples, "hipaamail_deliveries_bounced_total"))], None),
    ]
    cols, gap, top = 2, 14, 64
    width = cols * PANEL_W + (cols + 1) * gap
    height = top + ((len(panels) + 1) // 2) * (PANEL_H + gap) + gap
    body = [panel_svg(gap + (i % cols) * (PANEL_W + gap), top + (i // cols) * (PANEL_H + gap), *panel[:3], t_max,
                      threshold=panel[3]) for i, panel in enumerate(panels)]
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">
<style>
text {{ font-family: "DejaVu Sans", sans-serif; }}
.title {{ fill: #d8d9da; font-size: 14px; font-weight: bold; }}
.axis {{ fill: #8e8e8e; font-size: 10px; }}
.legend {{ fill: #c7d0d9; font-size: 11px; }}
.grid {{ stroke: #2c3235; stroke-width: 1; }}
.threshold {{ stroke: #f2495c; stroke-width: 1.2; stroke-dasharray: 6 4; }}
.thresholdlabel {{ fill: #f2495c; font-size: 10px; }}
</style>
<rect width="100%" height="100%" fill="#111217"/>
<text x="{gap}" y="30" fill="#d8d9da" font-size="20" font-weight="bold">hipaamail — send pipeline</text>
<text x="{gap}" y="50" fill="#8e8e8e" font-size="12">A real run (bench/metrics_dashboard.py): three campaigns, two Celery workers on Redis,
multiprocess metrics scraped every {samples[1]["t"] - samples[0]["t"] if len(samples) > 1 else 0:.1f}s; panels as in docs/grafana/hipaamail.json</text>
{chr(10).join(body)}
</svg>"""


def png_render(svg: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1162, "height": 1122})
        page.set_content(f'<html><body style="margin:0;background:#111217">{svg}</body></html>')
        page.locator("svg").screenshot(path=str(out))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=50, help="SEND_RATE_LIMIT, messages a second")
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between scrapes")
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument("--database", default="hipaamail_bench_metrics")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/4")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs/screenshots/metrics-dashboard.png")
    parser.add_argument("--samples", type=Path, default=ROOT / "var/metrics-dashboard.json")
    parser.add_argument("--from-samples", type=Path, default=None, help="draw these samples again, no run")
    args = parser.parse_args()
    samples_path = args.samples
    samples_path.parent.mkdir(parents=True, exist_ok=True)
    window = 1.0
    if args.from_samples:
        samples = json.loads(args.from_samples.read_text())
    else:
        multiprocess = Path(tempfile.mkdtemp(prefix="hipaamail-metrics-"))
        os.environ.update({
            "DATABASE_URL": recreate_database(args.admin_url, args.database),
            "DJANGO_SETTINGS_MODULE": "hipaamail.settings.test",
            "CELERY_BROKER_URL": args.broker,
            "SEND_RATE_LIMIT": str(args.rate),
            "SEND_BATCH_SIZE": str(args.batch_size),
            "HIPAAMAIL_TRANSPORT": "smtp",
            "EMAIL_USE_TLS": "false",
            "PROMETHEUS_MULTIPROC_DIR": str(multiprocess),
        })
        subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, check=True)
        try:
            samples = run(args)
        finally:
            shutil.rmtree(multiprocess, ignore_errors=True)
        samples_path.write_text(json.dumps(samples))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    png_render(dashboard_svg(samples, window=window), args.out)
    kept = f", the scrapes in {samples_path}" if not args.from_samples else ""
    print(f"wrote {args.out} ({len(samples)} scrapes){kept}")


if __name__ == "__main__":
    main()
