import veto_opa


def test_all_is_sorted_and_importable() -> None:
    assert veto_opa.__all__ == sorted(veto_opa.__all__)
    for name in veto_opa.__all__:
        assert hasattr(veto_opa, name), name


def test_public_classes_are_documented() -> None:
    for name in veto_opa.__all__:
        value = getattr(veto_opa, name)
        if isinstance(value, type):
            assert value.__doc__, name
