"""The baseline's checkout for the gate: a git ref resolved to its commit, that commit's tracked files exported to a
folder (the repository itself untouched), and a checkout's commit as pytest-benchmark's commit_info."""

import subprocess
import tarfile
from pathlib import Path

from amal.environment import GIT, git_commit
from amal.errors import UsageError


def git(repo: Path, *args: str) -> str:
    """Output of `git -C repo ARGS` (a checkout owned by another user read too: environment.GIT); UsageError with
    git's own message when it fails."""
    done = subprocess.run([*GIT, "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise UsageError(f"git {' '.join(args)}: {(done.stderr.strip().splitlines() or ['failed'])[-1]}")
    return done.stdout.strip()


def resolve_ref(repo: Path, ref: str) -> str:
    """The full commit id `ref` names in `repo`; UsageError for an unknown ref."""
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except UsageError:
        raise UsageError(f"unknown git ref {ref!r} in {repo}") from None


def export_commit(repo: Path, commit: str, dest: Path) -> Path:
    """The tracked files of `commit` extracted into `dest` (git archive: the repository itself is not touched)."""
    archive = dest / "commit.tar"
    git(repo, "archive", "--format=tar", "-o", str(archive), commit)
    with tarfile.open(archive) as tar:
        tar.extractall(dest / "checkout", filter="data")
    archive.unlink()
    return dest / "checkout"


def commit_info(checkout: Path) -> dict:
    """pytest-benchmark's commit_info of a checkout: its commit and whether it has local changes."""
    commit = git_commit(Path(checkout).resolve())
    return {"id": commit.removesuffix("+dirty"), "dirty": commit.endswith("+dirty")}
