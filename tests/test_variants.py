import pytest

from core import variants


def test_registry_has_the_five_post_training_variants_with_explanations():
    assert list(variants.POST_TRAINING) == ["float32", "dynamic", "float16", "int8", "int16x8"]
    for variant in variants.VARIANTS.values():
        assert variant.label and variant.explanation.endswith(".")


def test_parse_names_checks_the_registry():
    assert variants.parse_names("int8, float32,int8") == ["int8", "float32"]
    assert variants.parse_names("all") == list(variants.VARIANTS)
    with pytest.raises(ValueError, match="unknown variant 'int7'"):
        variants.parse_names("float32,int7")
    with pytest.raises(ValueError, match="no variant"):
        variants.parse_names(" , ")


def test_a_name_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="twice"):
        variants.register(variants.VARIANTS["float32"])
