"""The generation strategies that stages/generate.py chooses between.

  full.py             the reference tool's way: one structured request for all four files
  scaffold.py         for small models: the tool writes all but the handler bodies, the model writes those
  scaffold_plan.py    the scaffold's plan (spec, name, handlers, examples from the reference bank); pure
  scaffold_render.py  the scaffold's files rendered from assets/scaffold/ templates
  bodies.py           checking the bodies a model wrote, compile-only
"""
