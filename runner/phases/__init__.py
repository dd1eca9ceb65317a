"""The phases of loading a recipe, in the order ``runner.load.load_recipe`` runs them.

Each phase takes what it needs and returns what it built with the problems it found (never raising for
a problem a person can fix), so one ``recipe validate`` reports everything at once:

1. ``read``: the YAML with positions, the profile overlay, command-line overrides;
2. ``secrets`` (inline keys, tokens, passwords; the variables named as holding them) and ``schema``:
   the recipe file format, the stage specs and model roles;
3. ``models``: the zoo, the roles' zoo names, the stages' model bindings;
4. ``options``: each role's backend options against the options of the backend that serves it;
5. ``stages``: the components and their params;
6. ``graph``: inputs and dependencies, cycles and order, publish targets;
7. ``fields``: record fields between stages, and the fields prompt templates read.
"""
