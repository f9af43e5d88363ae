#!/usr/bin/env python3
"""Runs the official MCP conformance suite through switchboard, both protocol eras, both
sides, and judges the outcome without a baseline: every scenario the requirement set
marks as required must pass.

Runs (each for 2026-07-28 and 2025-11-25):

  server  stdio-dual     the fixture (dual era, stdio) behind switchboard, passthrough
  server  stdio-legacy   the fixture restricted to the legacy era: modern clients are
                         bridged to a legacy upstream (MRTR <-> server->client requests).
                         Informative: not counted (see INFORMATIVE below)
  server  http           the fixture over Streamable HTTP behind switchboard, passthrough
  server  namespaced     two fixtures (stdio + HTTP) behind switchboard with prefixed
                         names; only the scenarios that do not call fixed names
  client  -              conformance-driver: switchboard with the suite's server as its
                         only upstream, the scenario's calls driven through the gateway

Usage: run.py --node NODE --suite INDEX_JS --bin DIR --out DIR [--only RUN[,RUN]]
Prints one table row per scenario run and a final line `N passed, N failed` counting
required scenarios; exits 1 when a required scenario failed. Standard library only.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ERAS = ["2026-07-28", "2025-11-25"]

# Scenarios that neither call a fixture-specific name nor depend on unprefixed names,
# run against the namespaced gateway (the fixtures are named alpha and beta there).
NAMESPACED = {
    "2026-07-28": [
        "tools-list",
        "resources-list",
        "prompts-list",
        "server-sse-multiple-streams",
        "sep-2164-resource-not-found",
        "dns-rebinding-protection",
        "caching",
    ],
    "2025-11-25": [
        "server-initialize",
        "logging-set-level",
        "ping",
        "tools-list",
        "resources-list",
        "prompts-list",
        "server-sse-multiple-streams",
        "dns-rebinding-protection",
    ],
}

# Runs reported but not counted. Behind a legacy-only upstream a few 2026-07-28 scenarios
# cannot pass by design: they expect the fixture's own modern behaviour (its input-request
# keys, all input requests of a round at once, per-request client capabilities), while a
# legacy server asks one server->client request at a time and only ever sees the
# capabilities the gateway declared at `initialize`. See conformance/README.md.
INFORMATIVE = {"stdio-legacy"}

# Scenarios the pinned requirement sets do not score (pending in the suite, or added after
# its release) that switchboard passes: scored here like required ones, so a regression
# fails the run. A promoted scenario passes only with at least one SUCCESS check (an
# all-INFO run proves nothing). `server-sse-polling` (pending, 2025-11-25) is not here:
# it reports only INFO checks unless the server closes streams for polling, which
# switchboard does not do (ARCHITECTURE.md, "What a gateway cannot do").
PROMOTED = {
    "2025-11-25": {
        ("server", "json-schema-2020-12"),
        ("server", "server-session-lifecycle"),
        ("client", "json-schema-2020-12-preservation"),
    },
    "2026-07-28": {
        ("server", "json-schema-2020-12"),
        ("server", "http-header-validation"),
        ("server", "http-custom-header-server-validation"),
        ("client", "json-schema-2020-12-preservation"),
    },
}

# Extension scenarios scored for switchboard although the requirement files list them as
# not scored (reason: extension): the tasks extension passes through the gateway to a
# fixture that implements it (`--tasks`), so every `tasks-*` server scenario of the
# 2026-07-28 set counts on the runs whose upstream is the modern fixture. Behind the
# legacy-only fixture (stdio-legacy) a task cannot exist: see ARCHITECTURE.md.
SCORED_TASKS = {
    ("server", "2026-07-28", run, scenario)
    for run in ("stdio-dual", "http")
    for scenario in (
        "tasks-lifecycle",
        "tasks-capability-negotiation",
        "tasks-wire-fields",
        "tasks-request-state-removal",
        "tasks-mrtr-input",
        "tasks-request-headers",
        "tasks-dispatch-and-envelope",
        "tasks-status-notifications",
        "tasks-required-task-error",
        "tasks-mrtr-composition",
    )
}

# Extension scenarios switchboard implements, scored like required ones although the
# requirement sets list them as not scored (reason `extension`): the OAuth extensions
# of the gateway as the client of a protected upstream (crates/upstream/src/oauth).
SCORED_EXTENSIONS = {
    ("client", "auth/client-credentials-basic"),
    ("client", "auth/client-credentials-jwt"),
    ("client", "auth/enterprise-managed-authorization"),
    ("client", "auth/wif-jwt-bearer"),
    ("client", "auth/dpop"),
    ("client", "auth/dpop-nonce"),
}

TIMESTAMP = re.compile(r"-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")


def log(message):
    print(f"conformance: {message}", file=sys.stderr, flush=True)


def read_requirements(path):
    """The requirement set: required server and client scenarios, and the not-scored
    ones with their reason. A tiny reader for the suite's simple YAML layout."""
    required = {"server": set(), "client": set()}
    not_scored = {}
    section = None
    entry = None
    for raw in Path(path).read_text().splitlines():
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        top = re.match(r"^([a-z_]+):\s*$", line)
        if top:
            section = top.group(1)
            continue
        item = re.match(r"^  - (.+)$", line)
        if section in required and item:
            required[section].add(item.group(1).strip())
        elif section == "not_scored":
            scenario = re.match(r"^  - scenario:\s*(\S+)", line)
            field = re.match(r"^    (leg|reason):\s*(\S+)", line)
            if scenario:
                entry = {"scenario": scenario.group(1)}
            elif field and entry is not None:
                entry[field.group(1)] = field.group(2)
                if "leg" in entry and "reason" in entry:
                    not_scored[(entry["leg"], entry["scenario"])] = entry["reason"]
    return required, not_scored


class Process:
    """A child announcing its URL on stdout ("... listening on URL"); stopped on exit."""

    def __init__(self, argv, name, logs):
        self.name = name
        self.stderr = open(logs / f"{name}.stderr.log", "w")
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        deadline = time.monotonic() + 60
        self.url = None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            marker = "listening on "
            if marker in line:
                self.url = line.split(marker, 1)[1].strip()
                break
        if self.url is None:
            self.stop()
            raise RuntimeError(f"{name} did not announce its address (see {self.stderr.name})")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def gateway(bin_dir, config_text, name, logs):
    config = logs / f"{name}.toml"
    config.write_text(config_text)
    return Process(
        [str(bin_dir / "switchboard"), "serve", "--config", str(config), "--listen", "127.0.0.1:0"],
        name,
        logs,
    )


def toml_string(text):
    return json.dumps(text)  # a JSON string is a valid TOML basic string


def scenario_results(out_dir, side):
    """(scenario, checks) for every scenario directory the suite wrote under out_dir."""
    results = []
    for checks_file in sorted(Path(out_dir).rglob("checks.json")):
        relative = checks_file.parent.relative_to(out_dir).as_posix()
        name = TIMESTAMP.sub("", relative)
        if side == "server" and name.startswith("server-"):
            name = name[len("server-"):]
        results.append((name, json.loads(checks_file.read_text())))
    return results


def run_suite(node, suite, argv, out_dir, logs, label):
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(logs / f"{label}.log", "w") as output:
        completed = subprocess.run(
            [node, suite, *argv, "-o", str(out_dir)],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    log(f"{label}: suite exited {completed.returncode} after {time.monotonic() - started:.0f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--node", required=True)
    parser.add_argument("--suite", required=True, help="the suite's dist/index.js")
    parser.add_argument("--requirements", required=True, help="the suite's requirements/ dir")
    parser.add_argument("--bin", required=True, type=Path, help="directory of the built binaries")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--only", default="", help="comma-separated runs: stdio-dual,stdio-legacy,http,namespaced,client")
    args = parser.parse_args()
    only = {r for r in args.only.split(",") if r}
    wanted = lambda run: not only or run in only  # noqa: E731

    args.out.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="run-", dir=args.out))
    logs = out / "logs"
    logs.mkdir()
    log(f"results in {out}")
    fixture_bin = str(args.bin / "switchboard-fixture")
    requirements = {era: read_requirements(Path(args.requirements) / f"{era}.yaml") for era in ERAS}

    rows = []  # (side, run, era, scenario, checks)
    started = time.monotonic()
    processes = []
    try:
        http_fixture = Process([fixture_bin, "http", "--listen", "127.0.0.1:0", "--name", "fixture-http", "--tasks"], "fixture-http", logs)
        processes.append(http_fixture)
        server_runs = {
            "stdio-dual": f"[gateway]\npassthrough = true\n\n[servers.fixture]\ncommand = {toml_string(fixture_bin)}\nargs = [\"stdio\", \"--tasks\"]\n",
            "stdio-legacy": f"[gateway]\npassthrough = true\n\n[servers.fixture]\ncommand = {toml_string(fixture_bin)}\nargs = [\"stdio\", \"--era\", \"legacy\"]\n",
            "http": f"[gateway]\npassthrough = true\n\n[servers.fixture]\nurl = {toml_string(http_fixture.url)}\n",
            "namespaced": (
                f"[servers.alpha]\ncommand = {toml_string(fixture_bin)}\nargs = [\"stdio\", \"--name\", \"alpha\"]\n\n"
                f"[servers.beta]\nurl = {toml_string(http_fixture.url)}\n"
            ),
        }
        for run, config in server_runs.items():
            if not wanted(run):
                continue
            front = gateway(args.bin, config, f"gateway-{run}", logs)
            processes.append(front)
            for era in ERAS:
                label = f"server-{run}-{era}"
                target = out / label
                if run == "namespaced":
                    for scenario in NAMESPACED[era]:
                        run_suite(
                            args.node, args.suite,
                            ["server", "--url", front.url, "--scenario", scenario, "--spec-version", era],
                            target, logs, f"{label}-{scenario}",
                        )
                else:
                    run_suite(
                        args.node, args.suite,
                        ["server", "--url", front.url, "--requirements", era],
                        target, logs, label,
                    )
                rows += [("server", run, era, name, checks) for name, checks in scenario_results(target, "server")]
            front.stop()
            processes.remove(front)
        if wanted("client"):
            driver = args.bin / "switchboard-conformance-driver"
            os.environ["SWITCHBOARD_BIN"] = str(args.bin / "switchboard")
            for era in ERAS:
                label = f"client-{era}"
                target = out / label
                run_suite(
                    args.node, args.suite,
                    ["client", "--command", str(driver), "--requirements", era],
                    target, logs, label,
                )
                rows += [("client", "driver", era, name, checks) for name, checks in scenario_results(target, "client")]
    finally:
        for process in processes:
            process.stop()

    # Judge: a scenario fails when any check is a FAILURE (warnings are reported only),
    # the suite's own rule for requirement runs.
    passed = failed = 0
    extra_passed = extra_failed = 0
    informative_passed = informative_failed = 0
    print(f"{'side':6} {'run':12} {'era':10} {'scenario':48} {'checks':>9}  result")
    for side, run, era, scenario, checks in sorted(rows, key=lambda r: (r[0], r[1], r[2], r[3])):
        ok = sum(1 for c in checks if c.get("status") == "SUCCESS")
        bad = sum(1 for c in checks if c.get("status") == "FAILURE")
        warnings = sum(1 for c in checks if c.get("status") == "WARNING")
        required, not_scored = requirements[era]
        reason = not_scored.get((side, scenario))
        promoted = (side, scenario) in PROMOTED[era]
        is_required = (scenario in required[side] and reason is None) or promoted
        if reason == "extension" and (side, scenario) in SCORED_EXTENSIONS:
            is_required, reason = True, None
        if promoted and ok == 0:
            bad = max(bad, 1)  # nothing was shown to work
        if (side, era, run, scenario) in SCORED_TASKS:
            is_required, reason = True, None
        verdict = "pass" if bad == 0 else "FAIL"
        if promoted:
            verdict += f" (promoted: {reason or 'not in the requirement set'})"
        if is_required and run in INFORMATIVE:
            verdict = f"{verdict.lower()} (informative run)"
            informative_passed += bad == 0
            informative_failed += bad != 0
        elif is_required:
            passed += bad == 0
            failed += bad != 0
        else:
            verdict = f"{verdict.lower()} (not scored: {reason or 'not in the requirement set'})"
            extra_passed += bad == 0
            extra_failed += bad != 0
        if warnings:
            verdict += f", {warnings} warning(s)"
        print(f"{side:6} {run:12} {era:10} {scenario:48} {ok:>4}/{ok + bad:<4}  {verdict}")
    print(f"not scored: {extra_passed} passed, {extra_failed} failed (extensions, pending, added after release)")
    print(f"informative runs ({', '.join(sorted(INFORMATIVE))}): {informative_passed} passed, {informative_failed} failed")
    print(f"results: {out} ({time.monotonic() - started:.0f} s)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
