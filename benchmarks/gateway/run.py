"""The gateway benchmark: Podium beside a minimal pass-through and LiteLLM's proxy, against
the same fast mock upstream, in the same run, on this machine.

    .venv/bin/python -m benchmarks.gateway.run            # everything (about 6 minutes)
    .venv/bin/python -m benchmarks.gateway.run --quick    # shorter runs, for a smoke check
    .venv/bin/python -m benchmarks.gateway.run --soak 600 # add the 10-minute memory soak
    .venv/bin/python -m benchmarks.gateway.run --interleave 5   # add 5 interleaved rounds

Measures, per proxy: added latency p50/p99 at concurrency 1 (against the mock directly);
maximum requests/s with an instant upstream; sustained requests/s with a 20 ms upstream at
p99 < 1 s and < 0.1 % errors; concurrent streams (64 chunks, 20 ms apart) served without a
stall; and, with --soak, RSS over time under load. Results go to benchmarks/results/gateway.json
and benchmarks/results/gateway.md.

Each proxy's rows are measured while it alone runs, one proxy after another, so minutes pass
between the pass-through's maximum rate and Podium's; on a shared machine its speed drifts by
more than the differences measured. ``--interleave N`` adds N rounds in which the
pass-through and the single-process Podium servers, all started once, take turns at c=32:
each round's ratio compares runs seconds apart, and the report gives their median.

LiteLLM is installed into its own virtual environment (benchmarks/.venv-litellm) from the
package registry on first use; `--no-litellm` skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.gateway.bodies import chat_body, wrk_request_lua
from benchmarks.gateway.streams import run_streams

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
LITELLM_VENV = ROOT / "benchmarks" / ".venv-litellm"
LITELLM_KEY = "sk-podium-benchmark-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


@contextlib.contextmanager
def process(
    args: list[str], port: int, env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    out = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        args,
        env={**os.environ, **(env or {})},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk from Debian's packages ...", file=sys.stderr)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "wrk"], check=False, stdout=subprocess.DEVNULL
    )
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is needed: apt-get install wrk")
    return found


def ensure_litellm() -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    if binary.exists():
        return binary
    print("installing LiteLLM's proxy into benchmarks/.venv-litellm ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    subprocess.run(
        [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True
    )
    return binary


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 1.0


def wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    model: str = "mock",
    threads: int = 1,
) -> WrkResult:
    script = write_script(model, headers or {})
    try:
        output = subprocess.run(
            [
                ensure_wrk(),
                f"-t{threads}",
                f"-c{connections}",
                f"-d{seconds}s",
                "--latency",
                "--timeout",
                "5s",
                "-s",
                script,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    return WrkResult(rps, p50, p99, requests, wrk_errors(output))


def wrk_errors(output: str) -> int:
    """Non-2xx answers plus socket errors (connect, read, write, timeout) in wrk's summary."""
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx.group(1))
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sockets:
        errors += sum(int(n) for n in sockets.groups())
    return errors


@dataclass
class Target:
    """A proxy under test. ``fast`` reaches the instant mock, ``slow`` the 20 ms one: one port
    serving two model names, or (for the pass-through, which cannot route) two ports."""

    name: str
    fast_port: int
    slow_port: int
    headers: dict[str, str] = field(default_factory=dict)
    fast_model: str = "mock"
    slow_model: str = "mock20"

    def url(self, slow: bool = False) -> str:
        return f"http://127.0.0.1:{self.slow_port if slow else self.fast_port}/v1/chat/completions"

    def model(self, slow: bool = False) -> str:
        return self.slow_model if slow else self.fast_model

    def body(self, number: int, *, stream: bool = False) -> bytes:
        """Request ``number``'s body (see bodies.py: a new user message every request)."""
        return chat_body(self.model(), number, stream=stream).encode()


def mock_worker(name: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai",
        "model": "mock",
        "base_url": f"http://127.0.0.1:{port}/v1",
        "price": {"input": 1.0, "output": 2.0},
        "capabilities": ["streaming", "tools", "json"],
    }


def podium_config(
    fast: int, slow: int, data_dir: Path, *, governance: bool, shared: bool = False
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "data_dir": str(data_dir),
        "workers": [mock_worker("mock", fast), mock_worker("mock20", slow)],
    }
    config.update(governance_settings(shared=shared) if governance else ungoverned_settings())
    return config


def governance_settings(*, shared: bool = False) -> dict[str, Any]:
    """Keys required (the bench key carries a budget, RPM and TPM, so every request is checked,
    reserved against the budget, rate-limited and settled), the content policy on (data-class
    clearance, PII detection, injection screen, cost guard), traces recorded. ``shared``: the
    limits live in Redis, as replicas need."""
    limits: dict[str, Any] = {"backend": "redis"} if shared else {"backend": "memory"}
    return {
        "access": {"auth": {"required": True}, "limits": limits},
        "policy": {"enabled": True, "injection": {"action": "flag"}},
        "store": {"record_traces": True},
    }


def ungoverned_settings() -> dict[str, Any]:
    """No keys, no content policy, no traces: the gateway's own routing and proxying only."""
    return {"policy": {"enabled": False}, "store": {"record_traces": False}}


@contextlib.contextmanager
def podium_target(
    name: str, fast: int, slow: int, workdir: Path, *, governance: bool, processes: int = 1
) -> Iterator[Target]:
    port = free_port()
    data_dir = workdir / name.replace(" ", "-")
    data_dir.mkdir(parents=True, exist_ok=True)
    config_file = data_dir / "podium.yaml"
    config_file.write_text(
        yaml.safe_dump(
            podium_config(fast, slow, data_dir, governance=governance, shared=processes > 1)
        )
    )
    headers: dict[str, str] = {}
    podium = str(ROOT / ".venv" / "bin" / "podium")
    if governance:
        created = subprocess.run(
            [
                podium,
                "keys",
                "create",
                "--owner",
                "bench",
                "--budget",
                "1000000",
                "--period",
                "month",
                "--rpm",
                "10000000",
                "--tpm",
                "1000000000",
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PODIUM_CONFIG": str(config_file)},
        )
        headers["Authorization"] = f"Bearer {json.loads(created.stdout)['key']}"
    args = [
        podium,
        "serve",
        "--config",
        str(config_file),
        "--port",
        str(port),
        "--workers",
        str(processes),
        "--log-level",
        "warning",
    ]
    with process(args, port, log=data_dir / "serve.log") as proc:
        target = Target(name, port, port, headers)
        target.pid = proc.pid  # type: ignore[attr-defined]
        yield target


@contextlib.contextmanager
def passthrough_target(fast: int, slow: int, processes: int = 1) -> Iterator[Target]:
    ports = free_port(), free_port()
    with contextlib.ExitStack() as stack:
        for port, upstream in zip(ports, (fast, slow), strict=True):
            stack.enter_context(
                process(
                    [
                        str(ROOT / ".venv" / "bin" / "uvicorn"),
                        "benchmarks.gateway.passthrough:app",
                        "--port",
                        str(port),
                        "--loop",
                        "uvloop",
                        "--http",
                        "httptools",
                        "--no-access-log",
                        "--log-level",
                        "warning",
                        "--workers",
                        str(processes),
                    ],
                    port,
                    env={
                        "PASSTHROUGH_UPSTREAM": f"http://127.0.0.1:{upstream}",
                        "PYTHONPATH": str(ROOT),
                    },
                )
            )
        yield Target("pass-through" + (f" x{processes}" if processes > 1 else ""), *ports)


@contextlib.contextmanager
def litellm_target(fast: int, slow: int, workdir: Path) -> Iterator[Target]:
    binary = ensure_litellm()
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_list": [
                    {
                        "model_name": name,
                        "litellm_params": {
                            "model": "openai/mock",
                            "api_base": f"http://127.0.0.1:{upstream}/v1",
                            "api_key": "mock",
                        },
                    }
                    for name, upstream in (("mock", fast), ("mock20", slow))
                ],
                # LiteLLM refuses to start without a master key; with no database this key is
                # its only check (no budgets, no spend logs).
                "general_settings": {"master_key": LITELLM_KEY},
                "litellm_settings": {"set_verbose": False},
            }
        )
    )
    with process(
        [str(binary), "--config", str(config), "--port", str(port), "--num_workers", "1"],
        port,
        log=workdir / "litellm.log",
    ):
        yield Target("LiteLLM proxy", port, port, {"Authorization": f"Bearer {LITELLM_KEY}"})


@contextlib.contextmanager
def mock(delay_ms: float) -> Iterator[int]:
    port = free_port()
    with process(
        [
            sys.executable,
            "-m",
            "benchmarks.gateway.mock_upstream",
            "--port",
            str(port),
            "--delay-ms",
            str(delay_ms),
        ],
        port,
        env={"PYTHONPATH": str(ROOT)},
    ):
        yield port


def wrk_target(target: Target, *, slow: bool, connections: int, seconds: float) -> WrkResult:
    return wrk(
        target.url(slow),
        connections=connections,
        seconds=seconds,
        headers=target.headers,
        model=target.model(slow),
    )


def measure(target: Target, direct: WrkResult, *, quick: bool, streams: int) -> dict[str, Any]:
    seconds = 4 if quick else 10
    print(f"{target.name}: latency at c=1", file=sys.stderr)
    c1 = wrk_target(target, slow=False, connections=1, seconds=seconds)
    print(f"{target.name}: throughput at c=32", file=sys.stderr)
    c32 = wrk_target(target, slow=False, connections=32, seconds=seconds)
    result: dict[str, Any] = {
        "c1_rps": round(c1.rps, 1),
        "c1_p50_ms": c1.p50_ms,
        "c1_p99_ms": c1.p99_ms,
        "added_p50_ms": round(c1.p50_ms - direct.p50_ms, 3),
        "added_p99_ms": round(c1.p99_ms - direct.p99_ms, 3),
        "max_rps_c32": round(c32.rps, 1),
        "c32_p99_ms": c32.p99_ms,
        "c32_error_rate": round(c32.error_rate, 5),
    }
    best, best_c = 0.0, 0
    for connections in (16, 64, 256) if quick else (16, 32, 64, 128, 256, 512):
        print(f"{target.name}: 20 ms upstream at c={connections}", file=sys.stderr)
        run = wrk_target(target, slow=True, connections=connections, seconds=seconds)
        if run.p99_ms >= 1000 or run.error_rate >= 0.001:
            break
        if run.rps > best:
            best, best_c = run.rps, connections
    result["sustained_rps_20ms"] = round(best, 1)
    result["sustained_at_c"] = best_c
    print(f"{target.name}: {streams} concurrent streams", file=sys.stderr)
    result["streams"] = asyncio.run(
        run_streams(
            target.url(),
            streams,
            headers=target.headers,
            body=lambda number: target.body(number, stream=True),
        )
    )
    return result


INTERLEAVED = ("pass-through", "Podium, governance off", "Podium, governance on")


def interleave(
    makers: dict[str, Any], rounds: int, seconds: int, wanted: set[str] | None
) -> dict[str, Any]:
    """Max requests/s at c=32 in ``rounds`` rounds, the servers taking turns (started once,
    each warmed for 2 s first): per server every round's rate, and per round its ratio to the
    pass-through's in the same round."""
    names = [name for name in INTERLEAVED if wanted is None or name in wanted]
    rates: dict[str, list[float]] = {name: [] for name in names}
    with contextlib.ExitStack() as stack:
        targets = {name: stack.enter_context(makers[name]()) for name in names}
        for target in targets.values():
            wrk_target(target, slow=False, connections=32, seconds=2)
        for number in range(rounds):
            for name, target in targets.items():
                print(f"interleaved round {number + 1}: {name} at c=32", file=sys.stderr)
                rates[name].append(
                    round(wrk_target(target, slow=False, connections=32, seconds=seconds).rps, 1)
                )
    out: dict[str, Any] = {"rounds": rounds, "seconds": seconds, "rps": rates}
    base = rates.get("pass-through")
    if base:
        out["ratios"] = {
            name: [round(rate / first, 3) for rate, first in zip(values, base, strict=True)]
            for name, values in rates.items()
            if name != "pass-through"
        }
    return out


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def rss_mb(pid: int) -> float:
    total = 0
    for child in [pid, *children(pid)]:
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid:
                    found.append(int(entry.name))
                    found.extend(children(int(entry.name)))
    return found


def soak(target: Target, pid: int, seconds: int) -> dict[str, Any]:
    """RSS of the gateway every 10 s while wrk keeps it busy (and streams run alongside)."""
    samples: list[tuple[float, float]] = []
    wrk_proc = subprocess.Popen(
        [
            ensure_wrk(),
            "-t1",
            "-c16",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-s",
            write_script(target.model(), target.headers),
            target.url(),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    began = time.monotonic()
    while wrk_proc.poll() is None:
        samples.append((round(time.monotonic() - began, 1), round(rss_mb(pid), 1)))
        time.sleep(10)
    output = wrk_proc.communicate()[0]
    warm = [rss for at, rss in samples if at >= 60] or [rss for _, rss in samples]
    growth = (warm[-1] - warm[0]) / warm[0] if warm and warm[0] else 0.0
    requests = re.search(r"(\d+) requests in", output)
    errors = wrk_errors(output)
    return {
        "seconds": seconds,
        "samples": samples,
        "rss_start_mb": warm[0] if warm else None,
        "rss_end_mb": warm[-1] if warm else None,
        "growth_after_warmup": round(growth, 4),
        "requests": int(requests.group(1)) if requests else None,
        "errors": errors,
    }


def stored_traces(data_dir: Path) -> int:
    """Traces in a stopped Podium's SQLite store (its shutdown flushed them all)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(data_dir / "podium.db")) as db:
        count: int = db.execute("SELECT COUNT(*) FROM traces").fetchone()[0]
    return count


def write_script(model: str, headers: dict[str, str]) -> str:
    lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    lines += wrk_request_lua(model)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines) + "\n")
    return script.name


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def _ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}x" if base else "-"


def report(results: dict[str, Any]) -> str:
    rows = results["proxies"]
    base = rows.get("pass-through", {}).get("max_rps_c32")
    base2 = rows.get("pass-through x2", {}).get("max_rps_c32")
    peer = rows.get("LiteLLM proxy", {}).get("max_rps_c32")
    machine = results["machine"]
    lines = [
        "# Gateway benchmark",
        "",
        f"Run {results['date']} on {machine['cores']} cores ({machine['cpu']}), "
        f"Python {machine['python']}, {machine['system']}; load average at the start "
        f"{machine.get('load', '?')}. Same fast mock upstream, same run, side by side. "
        f"Command: `{results.get('command', '.venv/bin/python -m benchmarks.gateway.run')}`.",
        "",
        f"Direct to the mock at c=1: p50 {results['direct']['p50_ms']:.3f} ms, "
        f"p99 {results['direct']['p99_ms']:.3f} ms, {results['direct']['rps']:.0f} requests/s.",
        "",
        "| proxy | added p50 / p99 at c=1 (ms) | req/s at c=1 | max req/s (c=32) | "
        "vs pass-through | vs LiteLLM | sustained req/s, 20 ms upstream (at c) | "
        "stall-free streams |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        reference = base2 if name.endswith("x2") or " x2" in name else base
        streams = row["streams"]
        lines.append(
            f"| {name} | {row['added_p50_ms']:.2f} / {row['added_p99_ms']:.2f} | "
            f"{row['c1_rps']:.0f} | {row['max_rps_c32']:.0f} | "
            f"{_ratio(row['max_rps_c32'], reference)} | {_ratio(row['max_rps_c32'], peer)} | "
            f"{row['sustained_rps_20ms']:.0f} (c={row['sustained_at_c']}) | "
            f"{streams['stall_free']} of {streams['streams']} |"
        )
    lines += [
        "",
        "Added latency is the proxy's c=1 percentile minus the mock's own. Two-process rows "
        "compare with the two-process pass-through. Sustained: the highest rate among the "
        "concurrencies tried with p99 < 1 s and < 0.1% errors.",
    ]
    if "interleaved" in results:
        runs = results["interleaved"]
        lines += [
            "",
            f"Interleaved ({runs['rounds']} rounds, each server {runs['seconds']} s at c=32 in "
            "turn, started once): requests/s in each round, and the median of the rounds' "
            "ratios to the pass-through's.",
            "",
            "| proxy | req/s by round | median req/s | median ratio (range) |",
            "|---|---|---|---|",
        ]
        for name, rates in runs["rps"].items():
            ratios = runs.get("ratios", {}).get(name)
            spread = "1.00x"
            if ratios:
                spread = f"{_median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
            lines.append(
                f"| {name} | {', '.join(f'{rate:.0f}' for rate in rates)} | "
                f"{_median(rates):.0f} | {spread} |"
            )
    if "soak" in results:
        s = results["soak"]
        lines += [
            "",
            f"Soak ({s['seconds']} s, Podium governance on, wrk at c=16): RSS "
            f"{s['rss_start_mb']} MB -> {s['rss_end_mb']} MB after a 60 s warm-up "
            f"({s['growth_after_warmup']:.1%}); {s['requests']} requests answered, "
            f"{s.get('errors', '?')} errors, {s.get('traces', '?')} traces stored "
            f"({s.get('traces_missing', '?')} missing).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs (smoke check)")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM")
    parser.add_argument("--streams", type=int, default=512)
    parser.add_argument("--soak", type=int, default=0, help="seconds of memory soak (600)")
    parser.add_argument("--only", help="proxy names to run, separated by |")
    parser.add_argument(
        "--interleave", type=int, default=0, metavar="N", help="rounds of interleaved c=32 runs"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    ensure_wrk()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {**machine(), "load": " ".join(f"{n:.2f}" for n in os.getloadavg())},
        "command": ".venv/bin/python -m benchmarks.gateway.run " + " ".join(sys.argv[1:]),
        "proxies": {},
    }
    with tempfile.TemporaryDirectory() as tmp, mock(0) as fast, mock(20) as slow:
        workdir = Path(tmp)
        direct = Target("direct", fast, slow)
        d = wrk_target(direct, slow=False, connections=1, seconds=4 if args.quick else 10)
        results["direct"] = {"p50_ms": d.p50_ms, "p99_ms": d.p99_ms, "rps": d.rps}
        makers: list[tuple[str, Any]] = [
            ("pass-through", lambda: passthrough_target(fast, slow)),
            ("pass-through x2", lambda: passthrough_target(fast, slow, processes=2)),
            (
                "Podium, governance off",
                lambda: podium_target(
                    "Podium, governance off", fast, slow, workdir, governance=False
                ),
            ),
            (
                "Podium, governance on",
                lambda: podium_target(
                    "Podium, governance on", fast, slow, workdir, governance=True
                ),
            ),
            (
                "Podium x2, governance on",
                lambda: podium_target(
                    "Podium x2, governance on", fast, slow, workdir, governance=True, processes=2
                ),
            ),
        ]
        if not args.no_litellm:
            makers.append(("LiteLLM proxy", lambda: litellm_target(fast, slow, workdir)))
        wanted = set(args.only.split("|")) if args.only else None
        for name, make in makers:
            if wanted and name not in wanted:
                continue
            with make() as target:
                target.name = name
                results["proxies"][name] = measure(
                    target, d, quick=args.quick, streams=args.streams
                )
        if args.interleave:
            results["interleaved"] = interleave(
                dict(makers), args.interleave, 4 if args.quick else 10, wanted
            )
        if args.soak:
            with podium_target("soak", fast, slow, workdir, governance=True) as target:
                results["soak"] = soak(target, target.pid, args.soak)  # type: ignore[attr-defined]
            # Stopped gracefully: every trace is flushed. wrk's count misses the requests still
            # in flight when it stopped (each has a trace too), so traces >= requests.
            traces = stored_traces(workdir / "soak")
            results["soak"]["traces"] = traces
            results["soak"]["traces_missing"] = max(0, results["soak"]["requests"] - traces)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gateway.json").write_text(json.dumps(results, indent=2))
    (args.out / "gateway.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
