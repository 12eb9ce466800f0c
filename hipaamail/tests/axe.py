"""axe-core in Chromium for every browser test: `axe_violations(page)` and `assert_accessible(page)` (issue 17).

    .venv/bin/python -m hipaamail.tests.axe      # fetch (or check) the pinned axe-core now

axe-core is not committed: its npm package is fetched once with npm (`npm pack`, the registry's ordinary client, as
consent/tests/fhir_schemas.py fetches HL7's packages) into var/cache/npm-packages/ (gitignored), and its SHA-512 is
checked against the integrity pinned here every time it is read, so a changed or truncated file is never run. A
registry that cannot be reached is an error with a clear message, never a skipped check.

`assert_accessible` fails on a "serious" or "critical" violation, printing each rule, its help, and the elements
(axe's CSS selectors) that break it. The script is evaluated through the DevTools protocol, which the pages'
Content-Security-Policy does not govern (an injected <script> tag would be an inline script the policy refuses).
"""
import base64
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from functools import cache
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
CACHE_DIR = REPOSITORY / "var" / "cache" / "npm-packages"
NPM_TIMEOUT_SECONDS = 300

AXE_CORE = "axe-core"
AXE_CORE_VERSION = "4.14.1"
# The registry's dist.integrity for axe-core 4.14.1 (`npm view axe-core@4.14.1 dist.integrity`, 2026-12-07).
AXE_CORE_INTEGRITY = "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
AXE_CORE_MEMBER = "package/axe.min.js"

SERIOUS = ("serious", "critical")


class AxeUnavailable(Exception):
    """axe-core could not be fetched, or does not match its pinned integrity; the message says what to do."""


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _tarball_path() -> Path:
    return CACHE_DIR / f"{AXE_CORE}-{AXE_CORE_VERSION}.tgz"


def _npm_pack() -> bytes:
    spec = f"{AXE_CORE}@{AXE_CORE_VERSION}"
    npm = shutil.which("npm")
    if npm is None:
        raise AxeUnavailable(
            f"npm is not installed, and the accessibility checks fetch {spec} with it once (into {CACHE_DIR}). "
            "Install Node.js and npm (apt-get install -y npm)."
        )
    with tempfile.TemporaryDirectory() as folder:
        try:
            result = subprocess.run(
                [npm, "pack", spec, "--json", "--pack-destination", folder],
                capture_output=True, text=True, timeout=NPM_TIMEOUT_SECONDS, cwd=folder, check=False,
            )
        except subprocess.TimeoutExpired:
            raise AxeUnavailable(
                f"`npm pack {spec}` did not finish in {NPM_TIMEOUT_SECONDS} s: the npm registry cannot be reached."
            ) from None
        tarballs = list(Path(folder).glob("*.tgz"))
        if result.returncode != 0 or len(tarballs) != 1:
            errors = [line.removeprefix("npm error ").strip() for line in result.stderr.splitlines()
                      if line.startswith("npm error") and "complete log of this run" not in line]
            raise AxeUnavailable(
                f"`npm pack {spec}` failed (exit {result.returncode}: {'; '.join(errors[:3]) or 'no error message'})."
            )
        return tarballs[0].read_bytes()


def axe_tarball() -> bytes:
    """The pinned axe-core tarball, fetched once into CACHE_DIR and checked against its SHA-512 on every read."""
    path = _tarball_path()
    if path.exists():
        data = path.read_bytes()
        if _integrity(data) == AXE_CORE_INTEGRITY:
            return data
        path.unlink()  # truncated or altered: fetch it again
    data = _npm_pack()
    if _integrity(data) != AXE_CORE_INTEGRITY:
        raise AxeUnavailable(
            f"{AXE_CORE}@{AXE_CORE_VERSION} from the registry has SHA-512 {_integrity(data)}, not the pinned "
            f"{AXE_CORE_INTEGRITY}: refusing to run it."
        )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(path)
    return data


@cache
def axe_source() -> str:
    with tarfile.open(fileobj=io.BytesIO(axe_tarball()), mode="r:gz") as archive:
        member = archive.extractfile(AXE_CORE_MEMBER)
        if member is None:
            raise AxeUnavailable(f"{AXE_CORE}@{AXE_CORE_VERSION} has no {AXE_CORE_MEMBER}.")
        return member.read().decode()


def axe_violations(page, *, context: str = "document") -> list[dict]:
    """Every axe-core violation on the page as it is now: {"id", "impact", "help", "helpUrl", "targets"}."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(f"{axe_source()}\n;undefined")
    return page.evaluate(
        f"""async () => (await axe.run({context}, {{resultTypes: ["violations"]}})).violations
            .map(v => ({{id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                        targets: v.nodes.map(n => n.target.join(" "))}}))"""
    )


def serious_violations(page, *, ignore=()) -> list[dict]:
    """The serious and critical violations, less the (rule id, target) pairs in `ignore`."""
    ignored = set(ignore)
    found = []
    for violation in axe_violations(page):
        if violation["impact"] not in SERIOUS:
            continue
        targets = [target for target in violation["targets"] if (violation["id"], target) not in ignored
                   and (violation["id"], "*") not in ignored]
        if targets:
            found.append({**violation, "targets": targets})
    return found


def describe(violations: list[dict]) -> str:
    return "\n".join(
        f"  {v['impact']}: {v['id']}: {v['help']} ({v['helpUrl']})\n" + "".join(f"      {t}\n" for t in v["targets"])
        for v in violations
    )


def assert_accessible(page, *, ignore=()) -> None:
    """No serious or critical axe-core violation on the page as it is now (less `ignore`, (rule id, target) pairs
    of known violations being fixed elsewhere); the failure names each rule, its help and its elements."""
    serious = serious_violations(page, ignore=ignore)
    assert serious == [], f"axe-core on {page.url}:\n{describe(serious)}"


def main() -> int:
    try:
        source = axe_source()
    except AxeUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{AXE_CORE}@{AXE_CORE_VERSION}: {len(source):,} characters, cached in {_tarball_path()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
