#!/usr/bin/env python3
"""Benchmark of the APT method.  Run by hand: ``.venv/bin/python bench/apt_bench.py [--quick]``.

``apt-get install --download-only`` of 20 and of 200 small packages from a
repository on 127.0.0.1, with N = 1, 3, 5 rebuilders (threshold 1, 2, 3)
answering instantly or after 50 ms, through

* ``http://`` (apt's own method, the baseline),
* ``rebuildgate+http://`` (this project), and
* ``intoto://`` (Debian's apt-transport-in-toto 0.1.1, the tool this
  replaces; 20 packages only), run side by side in the same process with
  the same rebuilders and the same published links.

Each cell is the median wall time of several runs (archives emptied in
between, indexes already fetched).

A second table (``--hostile``, or ``--hostile-only``) runs the 200-package
transaction through ``rebuildgate+http`` with N = 5, M = 3 and a 3 s
deadline, with all five rebuilders honest and with one of them hostile
(answering every request 0.3 s before the deadline, or serving 2 MiB
documents with 8 bogus signatures), the runs alternated.  Target: within
2x of the honest time.  A third (``--prompt-only``) compares, N = 5, plain
http, the method alone, and the pre-prompt hook + method (the hook fills
the evidence cache, the method reads it).  apt-transport-in-toto needs Debian's
package (``apt-get install apt-transport-in-toto``): its layout is created
and signed here with Debian's in-toto 1.3 under /usr/bin/python3 (the
version that tool imports), with a throwaway OpenPGP key for the layout and
the rebuilders' own ed25519 keys.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key  # noqa: E402

from tests.apt_transport.harness import AptEnv, flat_source, shared_tmpdir  # noqa: E402
from tests.apt_transport.world import World  # noqa: E402
from tests.support.keys import GpgKey, make_gpg_key  # noqa: E402
from bench.cachedir import empty_cache  # noqa: E402
from bench.fastserver import RemoteServers  # noqa: E402
from tests.support.server import RebuilderServer  # noqa: E402

INTOTO_METHOD = Path("/usr/lib/apt/methods/intoto")
LATENCY = 0.05

# Run with Debian's python: in-toto 1.3.1 / securesystemslib 0.26, what
# apt-transport-in-toto itself imports.  Builds and signs the root layout.
LAYOUT_SCRIPT = r"""
import json, sys
from in_toto.models.layout import Layout, Step, Inspection
from in_toto.models.metadata import Metablock
spec = json.load(sys.stdin)
layout = Layout()
layout.set_relative_expiration(days=30)
for key in spec["keys"]:
    layout.keys[key["keyid"]] = key
step = Step(name="rebuild")
step.pubkeys = [k["keyid"] for k in spec["keys"]]
step.threshold = spec["threshold"]
step.expected_products = [["CREATE", "*.deb"], ["DISALLOW", "*.deb"]]
layout.steps = [step]
inspect = Inspection(name="verify-reprobuilds")
inspect.run = ["true"]
inspect.expected_materials = [["MATCH", "*.deb", "WITH", "PRODUCTS", "FROM", "rebuild"], ["DISALLOW", "*.deb"]]
layout.inspect = [inspect]
metablock = Metablock(signed=layout)
metablock.sign_gpg(gpg_keyid=spec["gpg_keyid"], gpg_home=spec["gpg_home"])
metablock.dump(spec["out"])
"""


def legacy_key(rb) -> dict:
    """The rebuilder's ed25519 key as in-toto 1.x lists it in a layout, under
    the keyid its links are signed with (securesystemslib 1.x's)."""
    public = load_pem_public_key(rb.key.public_pem.read_bytes()).public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"keyid": rb.key.keyid, "keytype": "ed25519", "scheme": "ed25519",
            "keyid_hash_algorithms": ["sha256", "sha512"], "keyval": {"public": public.hex(), "private": ""}}


def make_layout(path: Path, rebuilders, threshold: int, gpg: GpgKey) -> Path:
    spec = {"keys": [legacy_key(rb) for rb in rebuilders], "threshold": threshold, "out": str(path),
            "gpg_keyid": gpg.fingerprint, "gpg_home": str(gpg.homedir)}
    subprocess.run(["/usr/bin/python3", "-c", LAYOUT_SCRIPT], input=json.dumps(spec), text=True, check=True,
                   timeout=60, capture_output=True)
    return path


def intoto_ready() -> str | None:
    if not INTOTO_METHOD.exists():
        return "apt-transport-in-toto is not installed (apt-get install apt-transport-in-toto)"
    probe = subprocess.run(["/usr/bin/python3", "-c", "import in_toto.verifylib, securesystemslib.gpg.functions"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return f"apt-transport-in-toto does not import: {probe.stderr.strip().splitlines()[-1:]}"
    return None


class RemoteServer:
    """One rebuilder served from its own process (bench/fastserver.py)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._servers = RemoteServers([root])
        self.url: str = self._servers.urls[0]
        self._latency = 0.0

    @property
    def latency(self) -> float:
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._servers.latency(seconds)
        self._latency = seconds

    def hostile(self, latency: float | None = None, bogus: int = 0) -> None:
        """Answer just before the deadline and/or serve bogus documents (see fastserver)."""
        self._servers.hostile(0, latency, bogus)
        if latency is not None:
            self._latency = latency

    def requests(self) -> int:
        return self._servers.requests()

    def stop(self) -> None:
        self._servers.close()


class Bench:
    def __init__(self, base: Path, count: int, repeats: int) -> None:
        self.base = base
        self.repeats = repeats
        self.servers: list[RebuilderServer] = []
        self.world = World(base, make_server=self._serve)
        print(f"building {count} packages and 5 rebuilders in {base} ...", flush=True)
        self.packages = [self.world.package(f"bench{i:03d}", "1.0-1") for i in range(count)]
        self.rebuilders = [self.world.rebuilder(f"rb{i}", serve=False) for i in range(1, 6)]
        for rb in self.rebuilders:
            rb.server = RemoteServer(rb.root)  # type: ignore[assignment]
            self.servers.append(rb.server)  # type: ignore[arg-type]
            for pkg in self.packages:
                # sha256 only: in-toto 1.3's MATCH rule compares whole digest dicts,
                # and its inspection records sha256 alone
                self.world.attest(rb, pkg, digests={"sha256": pkg.sha256})
        self.repo = self.world.repo(self.packages)
        self.envs: dict[str, AptEnv] = {}

    def _serve(self, root: Path) -> RebuilderServer:
        self.servers.append(RebuilderServer(root).start())
        return self.servers[-1]

    def env(self, mode: str) -> AptEnv:
        """One private apt per method, indexes fetched once."""
        if mode not in self.envs:
            env = AptEnv(self.base / f"apt-{mode}")
            if mode == "intoto":
                env.sources([f"deb [trusted=yes] intoto://{self.repo.http.split('://', 1)[1]} ./"])
            else:
                env.sources([flat_source(self.repo.http, "rebuildgate+" if mode == "rebuildgate" else "")])
            result = env.update(options={"Rebuildgate::Policy": "/nonexistent"})
            if result.returncode != 0:
                raise RuntimeError(f"apt-get update failed for {mode}:\n{result}")
            self.envs[mode] = env
        return self.envs[mode]

    def prompt_env(self, policy: Path, key: str = "prompt") -> AptEnv:
        """A private apt with the pre-prompt hook (and the method), indexes fetched once;
        the hook reads the policy from apt's configuration files (it sees no -o options)."""
        if key not in self.envs:
            env = AptEnv(self.base / f"apt-{key}", prompt=True)
            env.sources([flat_source(self.repo.http, "rebuildgate+")])
            (env.etc / "apt.conf.d" / "rebuildgate-bench").write_text(f'Rebuildgate::Policy "{policy}";\n')
            result = env.update()
            if result.returncode != 0:
                raise RuntimeError(f"apt-get update failed for the hook:\n{result}")
            self.envs[key] = env
        return self.envs[key]

    def time_with_prompt(self, count: int, policy: Path, cache: Path,
                         options: dict[str, str]) -> dict[str, tuple[float, str | None]]:
        """Median wall time of plain http, the method alone and the hook + method,
        runs alternated; the evidence cache (the hook fills it, the method reads
        it) is emptied before every run (moved aside: bench/cachedir.py), so each run fetches its evidence once."""
        def setup(env: AptEnv, opts: dict[str, str]):
            def prepare() -> tuple[AptEnv, dict[str, str]]:
                empty_cache(cache)
                return env, opts
            return prepare

        return self._alternate(count, {
            "http": setup(self.env("http"), options),
            "method": setup(self.env("rebuildgate"), {**options, "Rebuildgate::Policy": str(policy)}),
            "hook": setup(self.prompt_env(policy), options),
        })

    def set_latency(self, seconds: float) -> None:
        for rb in self.rebuilders:
            assert rb.server is not None
            rb.server.latency = seconds

    def configure_intoto(self, layout: Path, rebuilders, gpg: GpgKey) -> None:
        """apt-transport-in-toto reads APT::Intoto::* list items (see its _intoto_parse_config)."""
        lines = [f'APT::Intoto::Layout:: "{layout}";', f'APT::Intoto::GPGHomedir:: "{gpg.homedir}";',
                 f'APT::Intoto::Keyids:: "{gpg.fingerprint}";', 'APT::Intoto::LogLevel:: "40";']
        lines += [f'APT::Intoto::Rebuilders:: "{rb.url}";' for rb in rebuilders]
        (self.env("intoto").etc / "apt.conf.d" / "intoto").write_text("\n".join(lines) + "\n")

    def _run(self, env: AptEnv, count: int, options: dict[str, str]) -> float | str:
        """One `apt-get install --download-only` of the first *count* packages: seconds, or why it failed."""
        env.clean()
        result = env.download(*[p.name for p in self.packages[:count]], options=options, timeout=600)
        if result.returncode != 0 or len(env.downloaded()) != count:
            return result.output.strip().splitlines()[-1] if result.output.strip() else "failed"
        return result.seconds

    def time_download(self, mode: str, count: int, options: dict[str, str]) -> tuple[float, str | None]:
        env = self.env(mode)
        times = []
        for _ in range(self.repeats):
            outcome = self._run(env, count, options)
            if isinstance(outcome, str):
                return float("nan"), outcome
            times.append(outcome)
        return statistics.median(times), None

    def _alternate(self, count: int, setups: dict[str, Any]) -> dict[str, tuple[float, str | None]]:
        """Median wall time of each mode, the modes' runs alternated so that they
        share the machine's noise; ``setups[mode]()`` prepares a run and gives
        (apt environment, apt options)."""
        times: dict[str, list[float]] = {mode: [] for mode in setups}
        errors: dict[str, str | None] = {mode: None for mode in setups}
        self.requests_per_run = {mode: [] for mode in setups}
        for _ in range(self.repeats):
            for mode, prepare in setups.items():
                env, opts = prepare()
                before = self.evidence_requests()
                outcome = self._run(env, count, opts)
                self.requests_per_run[mode].append(self.evidence_requests() - before)
                if isinstance(outcome, str):
                    errors[mode] = outcome
                else:
                    times[mode].append(outcome)
        return {mode: (statistics.median(times[mode]) if times[mode] else float("nan"), errors[mode])
                for mode in setups}

    def evidence_requests(self) -> int:
        """Requests the rebuilders have answered so far."""
        return sum(rb.server.requests() for rb in self.rebuilders)  # type: ignore[union-attr]

    def time_alternating(self, count: int, modes: dict[str, tuple[Path, dict | None]],
                         options: dict[str, str], env: AptEnv | None = None,
                         cache: Path | None = None) -> dict[str, tuple[float, str | None]]:
        """Median wall time of each mode (policy, hostile settings for rb5), runs alternated;
        *env* (default: the method alone), *cache* emptied before every run."""
        env = env or self.env("rebuildgate")
        honest = self.rebuilders[0].server.latency

        def setup(policy: Path, hostile: dict | None):
            def prepare() -> tuple[AptEnv, dict[str, str]]:
                if cache is not None:
                    empty_cache(cache)
                how = hostile or {}
                self.rebuilders[4].server.hostile(how.get("latency", honest), how.get("bogus", 0))
                return env, {"Rebuildgate::Policy": str(policy), **options}
            return prepare

        return self._alternate(count, {mode: setup(policy, hostile) for mode, (policy, hostile) in modes.items()})

    def close(self) -> None:
        for server in self.servers:
            server.stop()


HOSTILE_DEADLINE = 3.0
#: rb5's behaviour in each hostile-table column (None: honest).
HOSTILE_MODES: dict[str, dict | None] = {
    "none": None,
    "answers 0.3 s before the deadline": {"latency": HOSTILE_DEADLINE - 0.3},
    "2 MiB documents, 8 bogus signatures": {"bogus": 2 * 1024 * 1024},
}


def hostile_table(bench: "Bench", latencies: list[float], options: dict[str, str], hook: bool = False) -> list[tuple]:
    """The 200-package (or largest) transaction, N = 5, M = 3, with each HOSTILE_MODES behaviour of rb5;
    *hook*: through the pre-prompt hook and the method (an evidence cache emptied before every run),
    else the method alone."""
    count = len(bench.packages)
    cache = bench.base / "hostile-cache" if hook else None
    fetch = {"connect_timeout": 3.0, "read_timeout": 3.0, "deadline": HOSTILE_DEADLINE}
    fetch.update({"cache_dir": str(cache)} if cache else {})
    policy = bench.world.policy(bench.rebuilders, 3, name=f"policy-hostile{'-hook' if hook else ''}.toml", fetch=fetch)
    env = bench.prompt_env(policy, "prompt-hostile") if hook else None
    rows = []
    for latency in latencies:
        bench.set_latency(latency)
        got = bench.time_alternating(count, {mode: (policy, how) for mode, how in HOSTILE_MODES.items()}, options,
                                     env=env, cache=cache)
        rows.append((count, latency, got))
        print(f"  {count} pkgs N=5 M=3 latency={latency * 1000:.0f}ms: " + "  ".join(
            f"{mode}: {_fmt(secs)}s" + (f" ({err})" if err else "") for mode, (secs, err) in got.items()), flush=True)
    return rows


def _print_hostile(rows: list[tuple], repeats: int, hook: bool = False) -> None:
    print(f"\nOne hostile rebuilder of 5: median wall time of `apt-get install --download-only` through "
          f"rebuildgate+http{' with the pre-prompt hook' if hook else ' (the method alone)'} "
          f"({repeats} runs per cell, columns alternated), M = 3, deadline {HOSTILE_DEADLINE:g} s")
    modes = list(HOSTILE_MODES)
    print("| pkgs | honest latency | " + " | ".join(f"rb5: {m}" for m in modes) + " |")
    print("|---:|---:|" + "---:|" * len(modes))
    for count, latency, got in rows:
        base = got["none"][0]
        cells = [f"{got[m][0]:.2f}" + ("" if m == "none" else f" ({got[m][0] / base:.2f}x)") for m in modes]
        print(f"| {count} | {latency * 1000:.0f} ms | " + " | ".join(cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 packages only, 2 runs per cell")
    parser.add_argument("--repeats", type=int, default=None, help="runs per cell (default 5, --quick 2)")
    parser.add_argument("--no-intoto", action="store_true", help="skip apt-transport-in-toto")
    parser.add_argument("--sizes", default=None, help="package counts, e.g. 20,200")
    parser.add_argument("--rebuilders", default="1,3,5", help="N values (threshold 1, 2, 3 for N = 1, 3, 5)")
    parser.add_argument("--latencies", default="0,50", help="rebuilder latencies in ms")
    parser.add_argument("--max-workers", type=int, default=None,
                        help="policy [fetch] max_workers (default: the policy default; main and --prompt-only tables)")
    parser.add_argument("--pipeline-depth", type=int, default=None,
                        help="apt's Acquire::Max-Pipeline-Depth for every method (apt's default: 10)")
    parser.add_argument("--hostile", action="store_true", help="also the hostile-rebuilder table")
    parser.add_argument("--hostile-only", action="store_true", help="only the hostile-rebuilder table")
    parser.add_argument("--hostile-hook", action="store_true",
                        help="the hostile-rebuilder table through the pre-prompt hook + method as well")
    parser.add_argument("--prompt-only", action="store_true",
                        help="only the pre-prompt hook table (http, method alone, hook + method; N = 5)")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else [20] if args.quick else [20, 200]
    wanted_n = {int(x) for x in args.rebuilders.split(",")}
    latencies = [int(x) / 1000 for x in args.latencies.split(",")]
    if args.hostile_hook:
        args.hostile_only = args.hostile_only or not args.hostile
    if args.hostile_only:
        args.no_intoto = True
        sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else [200]
    intoto_problem = "skipped (--no-intoto)" if args.no_intoto else intoto_ready()
    if os.geteuid() != 0:
        print("apt-get must run as root (its methods drop to _apt)", file=sys.stderr)
        return 2

    # An installed package has its modules byte-compiled (Debian's py3compile);
    # a source tree under PYTHONDONTWRITEBYTECODE=1 would compile them again
    # in every method process apt starts.
    compileall.compile_dir(str(ROOT / "apt_transport"), quiet=1)
    compileall.compile_dir(str(ROOT / "common"), quiet=1)
    base = shared_tmpdir("rbg-apt-bench-")
    bench = Bench(base, max(sizes), repeats)
    gpg = None
    rows: list[tuple] = []
    hostile_rows: list[tuple] = []
    hostile_hook_rows: list[tuple] = []
    prompt_rows: list[tuple] = []
    try:
        apt_opts = {"Acquire::Max-Pipeline-Depth": str(args.pipeline_depth)} if args.pipeline_depth else {}
        if args.hostile or args.hostile_only:
            hostile_rows = hostile_table(bench, latencies, apt_opts)
        if args.hostile_hook:
            hostile_hook_rows = hostile_table(bench, latencies, apt_opts, hook=True)
        if args.prompt_only:
            prompt_rows = prompt_table(bench, sizes, latencies, apt_opts, args.max_workers)
        if args.hostile_only or args.prompt_only:
            wanted_n = set()
        if intoto_problem is None:
            gpg = make_gpg_key(base / "gpg", "rebuildgate bench layout <bench@rebuildgate.invalid>")
        for n, threshold in ((1, 1), (3, 2), (5, 3)):
            if n not in wanted_n:
                continue
            rbs = bench.rebuilders[:n]
            fetch = {"connect_timeout": 5.0, "read_timeout": 10.0, "deadline": 30.0}
            if args.max_workers:
                fetch["max_workers"] = args.max_workers
            policy = bench.world.policy(rbs, threshold, name=f"policy-{n}.toml", fetch=fetch)
            gate_opts = {"Rebuildgate::Policy": str(policy), **apt_opts}
            if gpg is not None:
                bench.configure_intoto(make_layout(base / f"root-{n}.layout", rbs, threshold, gpg), rbs, gpg)
            for latency in latencies:
                bench.set_latency(latency)
                for count in sizes:
                    plain, _ = bench.time_download("http", count, apt_opts)
                    gated, gate_err = bench.time_download("rebuildgate", count, gate_opts)
                    intoto, intoto_err = (float("nan"), intoto_problem)
                    if count == 20 and intoto_problem is None:
                        intoto, intoto_err = bench.time_download("intoto", count, apt_opts)
                    rows.append((count, n, threshold, latency, plain, gated, intoto, gate_err or intoto_err))
                    _print_row(rows[-1])
    finally:
        bench.close()
        if gpg is not None:
            gpg.cleanup()
        shutil.rmtree(base, ignore_errors=True)
    if rows:
        _print_table(rows, repeats, intoto_problem)
    if hostile_rows:
        _print_hostile(hostile_rows, repeats)
    if hostile_hook_rows:
        _print_hostile(hostile_hook_rows, repeats, hook=True)
    if prompt_rows:
        _print_prompt(prompt_rows, repeats)
    return 0


def prompt_table(bench: Bench, sizes: list[int], latencies: list[float], apt_opts: dict[str, str],
                 max_workers: int | None = None) -> list[tuple]:
    """N = 5, M = 3: plain http, the method alone, the pre-prompt hook + method."""
    cache = bench.base / "evidence-cache"
    fetch = {"connect_timeout": 5.0, "read_timeout": 10.0, "deadline": 30.0, "cache_dir": str(cache), "cache_ttl": 3600}
    if max_workers:
        fetch["max_workers"] = max_workers
    policy = bench.world.policy(bench.rebuilders, 3, name="policy-prompt.toml", fetch=fetch)
    rows = []
    for latency in latencies:
        bench.set_latency(latency)
        for count in sizes:
            got = bench.time_with_prompt(count, policy, cache, apt_opts)
            asked = {mode: max(counts) for mode, counts in bench.requests_per_run.items()}
            rows.append((count, latency, got, asked))
            print(f"  {count} pkgs {latency * 1000:.0f} ms: " + "  ".join(
                f"{mode} {_fmt(seconds)}s{f' ({err})' if err else ''}" for mode, (seconds, err) in got.items()),
                flush=True)
    return rows


def _print_prompt(rows: list[tuple], repeats: int) -> None:
    print(f"\nThe pre-prompt hook: median wall time of `apt-get install --download-only` ({repeats} runs per cell, "
          "columns alternated), N = 5, M = 3, evidence cache emptied (moved aside) before every run")
    print("| pkgs | latency | http | method alone | overhead | hook + method | overhead | evidence requests "
          "per run: method alone / hook + method |\n|---:|---:|---:|---:|---:|---:|---:|---:|")
    for count, latency, got, asked in rows:
        plain, method, hook = got["http"][0], got["method"][0], got["hook"][0]
        print(f"| {count} | {latency * 1000:.0f} ms | {plain:.2f} | {method:.2f} | {method - plain:+.2f} | "
              f"{hook:.2f} | {hook - plain:+.2f} | {asked['method']} / {asked['hook']} |")


def _fmt(seconds: float) -> str:
    return "  n/a " if seconds != seconds else f"{seconds:6.2f}"


def _print_row(row: tuple) -> None:
    count, n, m, latency, plain, gated, intoto, note = row
    print(f"  {count:3d} pkgs N={n} M={m} latency={latency * 1000:3.0f}ms: http {_fmt(plain)}s  "
          f"rebuildgate {_fmt(gated)}s  in-toto {_fmt(intoto)}s" + (f"  ({note})" if note else ""), flush=True)


def _print_table(rows: list[tuple], repeats: int, intoto_problem: str | None) -> None:
    print(f"\nMedian wall time of `apt-get install --download-only` ({repeats} runs per cell), seconds")
    print("| pkgs | N | M | rebuilder latency | http | rebuildgate+http | overhead | apt-transport-in-toto "
          "| in-toto / rebuildgate |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for count, n, m, latency, plain, gated, intoto, _note in rows:
        overhead = gated - plain
        ratio = intoto / gated if intoto == intoto and gated == gated else float("nan")
        print(f"| {count} | {n} | {m} | {latency * 1000:.0f} ms | {plain:.2f} | {gated:.2f} | {overhead:+.2f} | "
              f"{'n/a' if intoto != intoto else f'{intoto:.2f}'} | {'n/a' if ratio != ratio else f'{ratio:.0f}x'} |")
    target = [r for r in rows if r[0] == 200 and r[1] == 5 and r[3] == LATENCY]
    if target:
        print(f"\ntarget 1: overhead at N=5, 50 ms, 200 packages = {target[0][5] - target[0][4]:.2f} s (< 1.5 s)")
    t20 = [r for r in rows if r[0] == 20 and r[6] == r[6]]
    for r in t20:
        total, overhead = r[6] / r[5], (r[6] - r[4]) / (r[5] - r[4]) if r[5] > r[4] else float("nan")
        print(f"target 2: 20 packages, N={r[1]}, {r[3] * 1000:.0f} ms: apt-transport-in-toto takes {total:.1f}x "
              f"the time of rebuildgate+http ({overhead:.1f}x its overhead over plain http)")
    if intoto_problem:
        print(f"apt-transport-in-toto: {intoto_problem}")


if __name__ == "__main__":
    sys.exit(main())
