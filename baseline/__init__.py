"""The official baseline's method rebuilt on the kit's components (see baseline/model.py), for side-by-side runs.

python baseline/run.py --input_path tasks.json [--config pocket] [--output_dir DIR] [--set k=v ...]
"""
