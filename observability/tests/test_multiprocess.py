"""prometheus_client's multiprocess mode as ADR 0018 uses it: processes of one host count into one folder, and one
scrape (the web's /metrics, a worker's exporter) serves their sum, a process that exited included."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

COUNT = (
    "from observability import metrics; "
    "metrics.send_window_count(checked_to_sent=[0.004, 0.3], blocked_reasons=['revoked', 'suppressed'], refused=1)"
)
RENDER = "from observability.metrics import metrics_render; print(metrics_render(scrape_time=False).decode())"


def _python(code: str, folder: Path) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True,
                          text=True, timeout=60).stdout


def test_three_processes_count_into_one_folder_and_a_fourth_serves_their_sum(tmp_path):
    for _ in range(3):  # each exits before the scrape, as a recycled prefork child does
        _python(COUNT, tmp_path)

    text = _python(RENDER, tmp_path)

    lines = set(text.splitlines())
    assert "hipaamail_deliveries_sent_total 6.0" in lines
    assert 'hipaamail_deliveries_blocked_total{reason="revoked",stage="send"} 3.0' in lines
    assert 'hipaamail_deliveries_blocked_total{reason="suppressed",stage="send"} 3.0' in lines
    assert 'hipaamail_deliveries_bounced_total{kind="hard",source="smtp"} 3.0' in lines
    assert "hipaamail_send_check_to_send_seconds_count 6.0" in lines
    assert 'hipaamail_send_check_to_send_seconds_bucket{le="0.005"} 3.0' in lines
