import subprocess
from pathlib import Path

import pytest

from amal.checkouts import commit_info, export_commit, git, resolve_ref
from amal.environment import git_commit
from amal.errors import UsageError


def run_git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """Two commits: 'first' (amal/cases.py saying 'one') and 'second' (saying 'two'); a clean working tree."""
    repo = tmp_path_factory.mktemp("repo")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "amal").mkdir()
    commits = {}
    for name, text in (("first", "one"), ("second", "two")):
        (repo / "amal" / "cases.py").write_text(f"WORDS = {text!r}\n")
        run_git(repo, "add", "-A")
        run_git(repo, "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-q", "-m", name)
        commits[name] = run_git(repo, "rev-parse", "HEAD")
    return repo, commits


def test_a_ref_resolves_to_its_full_commit_and_an_unknown_one_is_named(repo):
    repo, commits = repo
    assert resolve_ref(repo, "HEAD~1") == commits["first"]
    assert resolve_ref(repo, commits["second"][:8]) == commits["second"]
    with pytest.raises(UsageError, match=f"^unknown git ref 'no-such-ref' in {repo}$"):
        resolve_ref(repo, "no-such-ref")


def test_a_failing_git_command_gives_git_s_own_last_line(tmp_path):
    with pytest.raises(UsageError, match="^git rev-parse HEAD: fatal: not a git repository"):
        git(tmp_path, "rev-parse", "HEAD")


def test_commit_info_says_whether_the_working_tree_has_changes(repo):
    repo, commits = repo
    assert commit_info(repo) == {"id": commits["second"], "dirty": False}
    cases = repo / "amal" / "cases.py"
    try:
        cases.write_text("WORDS = 'changed'\n")
        git_commit.cache_clear()  # a process reads its checkout's commit once
        assert commit_info(repo) == {"id": commits["second"], "dirty": True}
    finally:
        run_git(repo, "checkout", "-q", "--", "amal/cases.py")
        git_commit.cache_clear()


def test_a_checkout_owned_by_another_user_is_read(repo, monkeypatch):
    """A CI container running as root over its runner's checkout: git would refuse it ("dubious ownership")."""
    repo, commits = repo
    monkeypatch.setenv("GIT_TEST_ASSUME_DIFFERENT_OWNER", "1")  # git's own switch: the checkout looks foreign
    if subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True).returncode == 0:
        pytest.skip("this git does not check a repository's owner (before 2.35.2)")
    assert resolve_ref(repo, commits["first"]) == commits["first"]


def test_export_leaves_the_repository_untouched(repo, tmp_path):
    repo, commits = repo
    before = subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True).stdout
    checkout = export_commit(repo, commits["first"], tmp_path)
    assert (checkout / "amal" / "cases.py").read_text() == "WORDS = 'one'\n"  # the first commit's file
    after = subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True).stdout
    assert before == after
