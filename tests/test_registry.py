import pytest

from dear_ray.registry import Registry, UnknownNameError


def test_register_create_and_list():
    reg = Registry("widget")

    @reg.register()
    def small(*, width=1):
        return ("small", width)

    @reg.register("big_one")
    def _big():
        return "big"

    assert reg.names() == ["big_one", "small"]
    assert reg.create("small", width=3) == ("small", 3)
    assert reg.create("big_one") == "big"
    assert "small" in reg and "nope" not in reg


def test_unknown_name_lists_known_names():
    reg = Registry("widget")
    reg.register("alpha")(lambda: 1)
    reg.register("beta")(lambda: 2)
    with pytest.raises(UnknownNameError, match=r"unknown widget 'gamma'; known widgets: alpha, beta"):
        reg.create("gamma")


def test_duplicate_registration_rejected():
    reg = Registry("widget")
    reg.register("alpha")(lambda: 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("alpha")(lambda: 2)
