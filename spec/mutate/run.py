#!/usr/bin/env python3
"""spec/mutate/run.py - mutation testing of upstream (README.md here).

Reads spec/mutate/mutants.txt, applies each mutant to its own copy of the
tree (never the live checkout), runs `make check` there and counts it
killed (a test failed, the build failed, or it ran past --timeout) or
survived. Prints a table and "mutation score: K/N killed (P%)", equivalent
mutants left out; exits 1 when the score is below 90%.

Python 3 standard library only.
"""
import argparse
import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MUTANTS = os.path.join(HERE, "mutants.txt")
THRESHOLD = 0.90
KEYS = ("file", "old", "new", "note", "equivalent")
# what the copy leaves out: git's metadata, and the build (rebuilt from
# scratch once, in the baseline copy every mutant starts from)
IGNORE = shutil.ignore_patterns(".git", "build", "upstream.so", "*.o")
# spec/run-all.sh's lines: "NAME: P passed, F failed", and the total
SUMMARY = re.compile(r"^(?:(\S+): )?(\d+) passed, (\d+) failed$")


class Mutant:
    def __init__(self, mid, where):
        self.id, self.where = mid, where  # where: mutants.txt:line
        self.file = self.note = self.equivalent = None
        self.old = self.new = None
        self.line = None  # line of the original text in file
        self.status = None  # stale, ambiguous, equivalent, killed, ...
        self.detail = ""
        self.secs = 0.0


def parse(path):
    """The entries of mutants.txt (format: README.md)."""
    out, cur, seen = [], None, set()

    def bad(n, msg):
        sys.exit("%s:%d: %s" % (path, n, msg))

    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            m = re.match(r"^\[([A-Za-z0-9_.:-]+)\]\s*$", line)
            if m:
                if m.group(1) in seen:
                    bad(n, "duplicate id [%s]" % m.group(1))
                seen.add(m.group(1))
                cur = Mutant(m.group(1), "%s:%d" % (os.path.basename(path), n))
                out.append(cur)
                continue
            m = re.match(r"^([a-z]+):(?: (.*))?$", line)
            if not m or m.group(1) not in KEYS:
                bad(n, "expected [id], a comment, or one of %s: VALUE" % ", ".join(KEYS))
            if cur is None:
                bad(n, "a key before the first [id]")
            key, val = m.group(1), m.group(2) or ""
            if key in ("old", "new"):  # repeated: lines of a multi-line text
                prev = getattr(cur, key)
                setattr(cur, key, val if prev is None else prev + "\n" + val)
            elif getattr(cur, key) is not None:
                bad(n, "%s given twice in [%s]" % (key, cur.id))
            else:
                setattr(cur, key, val)
    for mu in out:
        for key in ("file", "old", "new", "note"):
            if getattr(mu, key) is None:
                sys.exit("%s [%s]: no %s:" % (mu.where, mu.id, key))
        if mu.old == "" or mu.old == mu.new:
            sys.exit("%s [%s]: old must be non-empty and differ from new" % (mu.where, mu.id))
    return out


def locate(mu, root):
    """Sets mu.line, or mu.status to stale (text not found) or ambiguous."""
    try:
        with open(os.path.join(root, mu.file), encoding="utf-8", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        mu.status, mu.detail = "stale", "no file " + mu.file
        return
    k = text.count(mu.old)
    if k == 0:
        mu.status, mu.detail = "stale", "original text not found"
    elif k > 1:
        mu.status, mu.detail = "ambiguous", "original text found %d times" % k
    else:
        mu.line = text[: text.index(mu.old)].count("\n") + 1


def make_env():
    env = dict(os.environ)
    env["MAKEFLAGS"] = ""
    for k in ("MAKELEVEL", "MFLAGS", "MAKEOVERRIDES"):
        env.pop(k, None)
    return env


def run_check(tree, timeout, early):
    """Runs make check in tree. Returns (outcome, detail, log): outcome is
    pass, fail, build or timeout."""
    p = subprocess.Popen(["make", "check"], cwd=tree, env=make_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True,
                         text=True, errors="replace")
    lines, failed_suites, suites = [], [], [0]
    stop, eof = threading.Event(), threading.Event()

    def reader():
        for line in p.stdout:
            lines.append(line)
            m = SUMMARY.match(line.rstrip("\n"))
            if m and m.group(1):
                suites[0] += 1
                if int(m.group(3)) > 0:
                    failed_suites.append(m.group(1))
                    if early:
                        stop.set()
        eof.set()
        stop.set()

    t0 = time.time()
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    finished = stop.wait(timeout)
    if eof.is_set():  # the output ended: let make exit by itself
        try:
            p.wait(max(1, timeout - (time.time() - t0)))
        except subprocess.TimeoutExpired:
            finished = False
    if p.poll() is None:  # timed out, or stopped at the first failing suite
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                break
            try:
                p.wait(5)
                break
            except subprocess.TimeoutExpired:
                continue
    rc = p.wait()
    t.join(5)
    log = "".join(lines)
    if failed_suites:
        notok = [ln.strip() for ln in lines if ln.startswith("not ok")]
        detail = "by " + ",".join(failed_suites)
        if notok:
            detail += ": " + re.sub(r"^not ok \d+ -? ?", "", notok[0])[:90]
        return "fail", detail, log
    if not finished:
        return "timeout", "no result in %ds" % timeout, log
    if rc == 0:
        return "pass", "", log
    if suites[0] == 0:
        err = [ln.strip() for ln in lines if "error" in ln]
        return "build", (err[0] if err else "make exited %d" % rc)[:110], log
    return "fail", "make check exited %d" % rc, log


def copy_tree(src, dst):
    shutil.copytree(src, dst, symlinks=True, ignore=IGNORE if src == ROOT else None)


def apply(mu, tree):
    path = os.path.join(tree, mu.file)
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text.replace(mu.old, mu.new, 1))


def run_mutant(mu, base, work, args):
    tree = os.path.join(work, "m-" + mu.id)
    t0 = time.time()
    copy_tree(base, tree)
    apply(mu, tree)
    outcome, detail, log = run_check(tree, args.timeout, not args.full)
    mu.secs = time.time() - t0
    with open(os.path.join(work, mu.id + ".log"), "w") as f:
        f.write(log)
    if not args.keep:
        shutil.rmtree(tree, ignore_errors=True)
    if mu.status == "equivalent":  # run on request: it should survive
        mu.detail = ("survived, as expected" if outcome == "pass"
                     else "KILLED (%s %s): not equivalent" % (outcome, detail))
        return mu
    mu.status = {"pass": "survived", "fail": "killed", "build": "build",
                 "timeout": "timeout"}[outcome]
    mu.detail = detail if outcome != "pass" else mu.note
    return mu


LABEL = {"killed": "KILLED", "build": "KILLED-B", "timeout": "KILLED-T",
         "survived": "SURVIVED", "equivalent": "equiv", "stale": "stale",
         "ambiguous": "ambiguous"}


def row(mu):
    where = "%s:%s" % (mu.file, mu.line if mu.line else "?")
    detail = mu.detail
    if mu.status == "equivalent" and not detail:
        detail = "equivalent: " + mu.equivalent
    return "%-9s %-28s %-32s %s" % (LABEL[mu.status], mu.id, where, detail)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", metavar="PATTERN",
                    help="run the mutants whose id, file or note matches this regex")
    ap.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    ap.add_argument("--timeout", type=int, default=180,
                    help="seconds one make check may take; past it the mutant counts "
                         "as killed by timeout (default 180)")
    ap.add_argument("--full", action="store_true",
                    help="run every suite (default: stop at the first that fails)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary trees and logs, and print where")
    ap.add_argument("--list", action="store_true",
                    help="check the entries against the tree and list them; run nothing")
    ap.add_argument("--include-equivalent", action="store_true",
                    help="run the equivalent mutants too (to see them survive; not counted)")
    ap.add_argument("--mutants", default=MUTANTS, help="the list (default spec/mutate/mutants.txt)")
    args = ap.parse_args()
    if args.jobs < 1:
        ap.error("--jobs must be >= 1")

    mutants = parse(args.mutants)
    if args.only:
        rx = re.compile(args.only)
        mutants = [m for m in mutants if rx.search(" ".join((m.id, m.file, m.note)))]
        if not mutants:
            sys.exit("no mutant matches %r" % args.only)
    for mu in mutants:
        locate(mu, ROOT)
        if mu.status is None and mu.equivalent is not None:
            mu.status = "equivalent"
    todo = [m for m in mutants
            if m.status is None or (m.status == "equivalent" and args.include_equivalent)]

    if args.list:
        for mu in mutants:
            if mu.status is None:
                mu.status, mu.detail = "survived", "(not run) " + mu.note
            print(row(mu).replace("SURVIVED ", "ok       ", 1))
        bad = [m for m in mutants if m.status in ("stale", "ambiguous")]
        print("%d entries, %d to run, %d equivalent, %d stale or ambiguous"
              % (len(mutants), sum(m.status == "survived" for m in mutants),
                 sum(m.status == "equivalent" for m in mutants), len(bad)))
        return 0

    work = tempfile.mkdtemp(prefix="upstream-mutate-")
    base = os.path.join(work, "base")
    t_start = time.time()
    try:
        print("baseline: copying the tree to %s and running make check" % base, flush=True)
        copy_tree(ROOT, base)
        outcome, detail, log = run_check(base, max(args.timeout, 600), False)
        if outcome != "pass":
            sys.stderr.write(log[-4000:])
            print("baseline make check did not pass (%s %s): nothing to measure"
                  % (outcome, detail), file=sys.stderr)
            return 2
        print("baseline passed in %.0fs; %d mutants to run, %d at a time"
              % (time.time() - t_start, len(todo), args.jobs), flush=True)
        done = 0
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as ex:
            futs = [ex.submit(run_mutant, mu, base, work, args) for mu in todo]
            for fut in concurrent.futures.as_completed(futs):
                mu = fut.result()
                done += 1
                print("[%d/%d %4.0fs] %s" % (done, len(todo), mu.secs, row(mu)), flush=True)
    finally:
        if args.keep:
            print("trees and logs kept in " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print("%-9s %-28s %-32s %s" % ("result", "mutant", "where", "detail / what survived"))
    for mu in sorted(mutants, key=lambda m: (m.file, m.line or 0, m.id)):
        print(row(mu))
    count = {s: sum(m.status == s for m in mutants) for s in LABEL}
    killed = count["killed"] + count["build"] + count["timeout"]
    n = killed + count["survived"]
    print()
    print("killed %d (by tests %d, by build failure %d, by timeout %d), survived %d; "
          "not counted: equivalent %d, stale %d, ambiguous %d"
          % (killed, count["killed"], count["build"], count["timeout"], count["survived"],
             count["equivalent"], count["stale"], count["ambiguous"]))
    print("time: %.0fs" % (time.time() - t_start))
    if n == 0:
        print("mutation score: 0/0 killed (no mutant run)")
        return 0
    print("mutation score: %d/%d killed (%.1f%%)" % (killed, n, 100.0 * killed / n))
    if killed < THRESHOLD * n:
        print("below %d%%" % (THRESHOLD * 100), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
