"""The `dear-ray` subcommands, one module per group: each has `add_parsers(sub)` (its
subcommands' arguments) and one `_cmd_*` function per subcommand (`dear_ray.cli` dispatches).
"""
