"""The .dockerignore matcher agrees with the docker CLI (moby/patternmatcher, ignorefile)."""

from __future__ import annotations

import pytest

from webapp.builds.dockerignore import DockerIgnore, DockerIgnoreError, clean_path


def ignores(patterns: list[str], path: str) -> bool:
    return DockerIgnore.parse("\n".join(patterns)).ignores(path)


# One pattern, one path: moby's own TestMatches table, judged as MatchesOrParentMatches judges it.
SINGLE_PATTERN_CASES = [
    ("**", "file", True),
    ("**", "dir/file", True),
    ("**/", "file", True),
    ("**/", "dir/file", True),
    ("**/**", "dir/file", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/dir2/file", True),
    ("**/dir", "dir", True),
    ("**/dir", "dir/file", True),  # through its parent
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**file", "file", True),
    ("**file", "dir/file", True),
    ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True),
    ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\\\", "a\\", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "axb", False),
    # Go's filepath.Match table, as moby runs it.
    ("*", "abc", True),
    ("*c", "abc", True),
    ("a*", "ab/c", True),  # through the parent "ab"
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[^e-g]", "abc", True),
    ("a?b", "a☺b", True),
    ("a???b", "a☺b", False),
    ("[a-ζ]*", "α", True),
    ("*[a-ζ]", "A", False),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
    ("[\\]a]", "]", True),
    ("[\\-]", "-", True),
    ("[x\\-]", "-", True),
    ("[x\\-]", "z", False),
    ("*x", "xxx", True),
    # What people write in real .dockerignore files.
    ("node_modules", "node_modules/left-pad/index.js", True),
    ("dir/", "dir/file", True),
    ("/abs", "abs", True),
    ("/abs", "dir/abs", False),
    ("*.log", "debug.log", True),
    ("*.log", "logs/debug.log", False),  # "*" stops at a slash
    ("**/*.log", "logs/deep/debug.log", True),
    ("./build/../dist", "dist/app.js", True),  # cleaned like a path
    ("temp?", "temp1", True),
    ("temp?", "temp12", False),
    ("[z-a]", "b", False),  # a reversed range is valid and matches nothing
]


@pytest.mark.parametrize(("pattern", "path", "expected"), SINGLE_PATTERN_CASES)
def test_a_single_pattern_matches_as_docker_matches(pattern: str, path: str, expected: bool) -> None:
    assert ignores([pattern], path) is expected


@pytest.mark.parametrize(
    ("patterns", "path", "expected"),
    [
        (["*.md", "!README.md"], "CHANGES.md", True),
        (["*.md", "!README.md"], "README.md", False),
        (["!README.md", "*.md"], "README.md", True),  # the last matching pattern wins
        (["docs", "!docs/README.md"], "docs/README.md", False),  # a file brought back from an ignored dir
        (["docs", "!docs/README.md"], "docs/guide.md", True),
        (["docs/", "!docs/README.md"], "docs/README.md", False),
        (["docs/*", "!docs/README.md"], "docs/README.md", False),
        (["**", "!util/docker/web"], "util/docker/web/foo", False),
        (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
        (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
        (["*", "!src", "src/*.tmp"], "src/main.go", False),
        (["*", "!src", "src/*.tmp"], "src/cache.tmp", True),
        ([], "anything", False),
    ],
)
def test_exceptions_and_order_decide_as_docker_decides(
    patterns: list[str], path: str, expected: bool
) -> None:
    assert ignores(patterns, path) is expected


def test_comments_blank_lines_and_surrounding_spaces_are_ignored() -> None:
    rules = DockerIgnore.parse("\ufeff# build output\n\n   dist   \r\n\t\n  !dist/keep.txt  \n")
    assert rules.ignores("dist/app.js")
    assert not rules.ignores("dist/keep.txt")
    assert not rules.ignores("# build output")


def test_only_a_hash_in_the_first_column_starts_a_comment() -> None:
    # The docker CLI checks for "#" before trimming, so an indented "#" is part of a pattern.
    rules = DockerIgnore.parse(" #notes")
    assert rules.ignores("#notes")


def test_the_context_root_itself_is_never_ignored() -> None:
    assert not ignores(["**"], ".")
    assert not ignores(["*"], "")


def test_a_path_is_cleaned_before_matching() -> None:
    assert ignores(["secret"], "./secret")
    assert ignores(["a/b"], "a//b")


@pytest.mark.parametrize(
    ("text", "line_number"),
    [
        ("ok\n[", 2),
        ("!", 1),
        ("ok\n\n  !   ", 3),
        ("a\\", 1),
        ("[]a]", 1),
        ("[-]", 1),
        ("[x-]", 1),
        ("[a-b-c]", 1),
        ("[^", 1),
        ("a[", 1),
    ],
)
def test_a_malformed_pattern_is_reported_with_its_line(text: str, line_number: int) -> None:
    with pytest.raises(DockerIgnoreError) as caught:
        DockerIgnore.parse(text)
    assert caught.value.line_number == line_number
    assert caught.value.reason


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [
        ("", "."),
        ("a//b/./c/", "a/b/c"),
        ("a/../../b", "../b"),
        ("/../a", "/a"),
        ("/", "/"),
        ("./", "."),
    ],
)
def test_paths_are_cleaned_like_go_path_clean(path: str, cleaned: str) -> None:
    assert clean_path(path) == cleaned
