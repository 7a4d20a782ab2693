package veto.lib.ops_test

import data.veto.lib.ops

test_numbers_and_strings_are_ordered if {
	ops.ordered(1, 2.5)
	ops.ordered("a", "b")
}

test_mixed_types_are_not_ordered if {
	not ops.ordered(1, "1")
	not ops.ordered(null, null)
	not ops.ordered([1], [2])
}

test_member_of_array_compares_numbers_by_value if {
	ops.member(1, [1.0, 2])
	ops.not_member(3, [1, 2])
	not ops.member(true, [1])
}

test_not_member_needs_an_element_of_the_type if {
	not ops.not_member(true, [1])
	not ops.not_member(null, ["production"])
	not ops.not_member(["a"], ["a"])
	ops.not_member("b", [1, "a"])
	ops.not_member(null, [])
	not ops.not_member(null, ["a", null, 1])
	ops.member(null, ["a", null, 1])
}

test_member_of_object_means_key if {
	ops.member("a", {"a": false})
	ops.not_member("b", {"a": 1})
	not ops.not_member(1, {"1": 1})
	not ops.member(1, {"1": 1})
}

test_comparable_values if {
	ops.comparable(1, 2.5)
	ops.comparable("a", null)
	ops.comparable(null, [1])
	not ops.comparable("a", ["a"])
	not ops.comparable(1, "1")
}

test_member_of_other_types_is_undefined if {
	not ops.member("a", "abc")
	not ops.not_member("a", "abc")
	not ops.member(1, 1)
}

test_sized_values if {
	ops.sized("")
	ops.sized([])
	ops.sized({})
	not ops.sized(1)
	not ops.sized(null)
}

test_whole_numbers if {
	ops.whole(3)
	ops.whole(3.0)
	ops.whole(-7)
	not ops.whole(2.5)
	not ops.whole("3")
}

test_whole_numbers_beyond_a_float if {
	ops.whole(1606938044258990275541962092341162602522202993782792835301377)
	ops.whole(1e400)
	ops.whole(12.50e1)
	ops.whole(120e-1)
	ops.whole(0e-400)
	not ops.whole(125e-1)
	not ops.whole(12345678901234567890123.5)
	not ops.whole(1606938044258990275541962092341162602522202993782792835301377e-1)
}

test_add_by_type if {
	ops.add(1, 2) == 3
	ops.add("a", "b") == "ab"
	ops.add([1], [2]) == [1, 2]
}

test_add_mismatched_is_undefined if {
	not ops.add(1, "a")
	not ops.add("a", [1])
	not ops.add(null, null)
}

test_same_and_different_across_types if {
	ops.same(1, 1.0)
	ops.different("a", null)
	not ops.same([1, "a"], ["a"])
	ops.different([1, "a"], ["a"])
}

test_present_holds_for_false_and_null if {
	ops.present({"a": false}, "a")
	ops.present({"a": null}, "a")
	ops.present([false], 0)
	not ops.present({"a": 1}, "b")
	not ops.present([1], 1)
	not ops.present("ab", 0)
}

test_addable_pairs if {
	ops.addable(1, 2.5)
	ops.addable("a", "")
	ops.addable([], [1])
	not ops.addable(1, "a")
	not ops.addable(null, null)
}

test_both_whole if {
	ops.both_whole(4, 2.0)
	not ops.both_whole(4, 0.5)
	not ops.both_whole("4", 2)
}

_path_form := {
	"path": ["args", "o", "k"],
	"missing": ["args is missing", "args.o is missing", "args.o.k is missing"],
	"not_object": [null, ["args is not an object (found ", ")"], ["args.o is not an object (found ", ")"]],
	"else": ["args.o.k: upper() cannot take %s", ["args", "o", "k"]],
}

test_detail_of_a_text_is_the_text if {
	ops.detail("args.x is missing") == "args.x is missing"
}

test_detail_fills_in_the_types_of_input_values if {
	ops.detail(["%s and %s (100%%)", ["args", "a"], ["args", "b"]]) == "number and array (100%)" with input as {"args": {"a": 1, "b": []}}
}

test_detail_of_a_path_names_the_first_step_that_fails if {
	ops.detail(_path_form) == "args is missing" with input as {}
	ops.detail(_path_form) == "args.o is missing" with input as {"args": {}}
	ops.detail(_path_form) == "args.o.k is missing" with input as {"args": {"o": {}}}
	ops.detail(_path_form) == "args is not an object (found string)" with input as {"args": "s"}
	ops.detail(_path_form) == "args.o is not an object (found null)" with input as {"args": {"o": null}}
}

test_detail_of_a_path_that_can_be_read_is_the_else_detail if {
	ops.detail(_path_form) == "args.o.k: upper() cannot take boolean" with input as {"args": {"o": {"k": false}}}
}
