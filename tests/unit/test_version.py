import pytest

from controllers.agreement import version


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("v1.31.4", (1, 31, 4)),
        ("v1.31.4-eks-1234abc", (1, 31, 4)),
        ("v1.30.2+k3s1", (1, 30, 2)),
        ("v1.29.6-gke.1326000", (1, 29, 6)),
        ("v1.28.0-rc.1", (1, 28, 0)),
        ("1.27.3", (1, 27, 3)),
        (" v1.26.0 ", (1, 26, 0)),
    ],
)
def test_parses_vendor_versions_by_major_minor_patch(text: str, key: tuple[int, int, int]) -> None:
    parsed = version.parse_version(text)
    assert parsed is not None
    assert parsed.key == key
    assert parsed.raw == text.strip()


@pytest.mark.parametrize(
    "text", ["", "latest", "v1.31", "v1.x.4", "1.2.3.4", "v1.31.4 extra", None, 131, "vv1.2.3"]
)
def test_garbage_is_not_a_version(text: object) -> None:
    assert version.parse_version(text) is None


def test_vendor_suffixes_do_not_count_in_comparisons() -> None:
    eks = version.parse_version("v1.31.4-eks-1234abc")
    plain = version.parse_version("v1.31.4")
    newer = version.parse_version("v1.31.5+k3s1")
    assert eks is not None and plain is not None and newer is not None
    assert eks == plain
    assert plain < newer
    assert newer >= eks
    assert eks.minor_text == "1.31"


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("registry.k8s.io/kube-apiserver:v1.31.4", "v1.31.4"),
        ("registry:5000/kube-apiserver:v1.31.4@sha256:abcd", "v1.31.4"),
        ("registry:5000/kube-apiserver", ""),
        ("kube-apiserver@sha256:abcd", ""),
        (None, ""),
    ],
)
def test_image_tag(image: object, tag: str) -> None:
    assert version.image_tag(image) == tag


def test_minors_behind() -> None:
    new, old = version.parse_version("v1.36.0"), version.parse_version("v1.32.9")
    assert new is not None and old is not None
    assert version.minors_behind(newer=new, older=old) == 4
    assert version.minors_behind(newer=old, older=new) == -4
