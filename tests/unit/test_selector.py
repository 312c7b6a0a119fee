import pytest

from controllers.agreement import selector


def test_exists_equals_not_equals_and_absent() -> None:
    sel = selector.parse_selector("role, tier=web, zone!=b, !excluded")
    assert sel.matches({"role": "", "tier": "web", "zone": "a"})
    assert not sel.matches({"role": "", "tier": "web", "zone": "b"})
    assert not sel.matches({"tier": "web"})
    assert not sel.matches({"role": "", "tier": "web", "excluded": "yes"})
    assert not sel.matches(None)


def test_default_master_selectors_match_either_role_label() -> None:
    selectors = [selector.parse_selector(text) for text in selector.DEFAULT_MASTER_SELECTORS]
    assert selector.matches_any(selectors, {"node-role.kubernetes.io/control-plane": ""})
    assert selector.matches_any(selectors, {"node-role.kubernetes.io/master": "true"})
    assert not selector.matches_any(selectors, {"node-role.kubernetes.io/worker": ""})


@pytest.mark.parametrize("text", ["", "a,,b", "a in (x,y)", "!a=b", "=x", "a=b=c"])
def test_bad_selectors_are_rejected_with_the_part_named(text: str) -> None:
    with pytest.raises(selector.SelectorError):
        selector.parse_selector(text)
