"""recipes/*.args: every published training command as an argparse ``@file``; each parses with its script."""
import glob
import importlib
import os
import re
import shlex

import pytest

from metric_learning.config.flags import str2bool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(glob.glob(os.path.join(ROOT, "recipes", "*.args")))
SCRIPTS = {"metric_learning/train_elem.py": "metric_learning.train_elem",
           "metric_learning/train_pair.py": "metric_learning.train_pair"}


def read_recipe(path):
    """(script, result doc, [(flag, value or None)]) read independently of the parser under test."""
    with open(path) as f:
        lines = [line.strip() for line in f if line.strip()]
    script = re.fullmatch(r"# script: (\S+)", lines[0])
    assert script, "%s: the first line must be '# script: <path>'" % path
    result = re.fullmatch(r"# result: (\S+\.md) .*", lines[1])
    assert result, "%s: the second line must be '# result: docs/<file>.md — <what>'" % path
    flags = []
    for line in lines[2:]:
        if line.startswith("#"):
            continue
        tokens = shlex.split(line)
        assert tokens[0].startswith("--") and len(tokens) <= 2, "%s: %r is not '--flag value'" % (path, line)
        flags.append((tokens[0], tokens[1] if len(tokens) == 2 else None))
    return script.group(1), result.group(1), flags


def expected(parsed, text):
    """The file's text converted as the parsed attribute's type (bool, image-shape tuple, int, float, str)."""
    if isinstance(parsed, bool):
        return str2bool(text)
    if isinstance(parsed, tuple):
        return tuple(int(v) for v in text.split(","))
    return type(parsed)(text)


def test_there_are_recipes():
    assert len(RECIPES) >= 10


@pytest.mark.parametrize("path", RECIPES, ids=[os.path.basename(p) for p in RECIPES])
def test_recipe_parses_to_its_values(path):
    script, result_doc, flags = read_recipe(path)
    assert script in SCRIPTS, "%s names an unknown script %s" % (path, script)
    assert os.path.isfile(os.path.join(ROOT, script))
    args = vars(importlib.import_module(SCRIPTS[script]).parse_args(["@" + path]))
    for flag, text in flags:
        name = flag[2:]
        # an abbreviated or misspelt flag does not name an attribute (argparse would accept a prefix)
        assert name in args, "%s: %s is not a flag of %s" % (path, flag, script)
        assert args[name] == expected(args[name], text), "%s: %s %s parsed to %r" % (path, flag, text, args[name])
    assert len({flag for flag, _ in flags}) == len(flags), "%s repeats a flag" % path
    # the file is named after its backbone, and the document it cites exists and names it back
    assert args["model"].lower() in os.path.basename(path)
    with open(os.path.join(ROOT, result_doc)) as f:
        assert "recipes/" + os.path.basename(path) in f.read(), "%s does not mention %s" % (result_doc, path)


def test_argument_file_reads_comments_and_flag_value_lines(tmp_path):
    from metric_learning import train_elem

    recipe = tmp_path / "r.args"
    recipe.write_text("# script: metric_learning/train_elem.py\n\n--model MobileNetV2   # inline comment\n"
                      "--image_shape 3,128,64\n--cache_frozen True\n")
    args = train_elem.parse_args(["@%s" % recipe, "--lr", "0.5"])
    assert (args.model, args.image_shape, args.cache_frozen, args.lr) == ("MobileNetV2", (3, 128, 64), True, 0.5)
    # a flag after the file overrides the file's
    assert train_elem.parse_args(["@%s" % recipe, "--model", "PPLCNet_x1_0"]).model == "PPLCNet_x1_0"


def test_argument_file_with_a_misspelt_flag_is_refused(tmp_path, capsys):
    from metric_learning import train_elem

    recipe = tmp_path / "bad.args"
    recipe.write_text("# a comment\n--model MobileNetV2\n--lr_stratgy cosine\n")
    with pytest.raises(SystemExit):
        train_elem.parse_args(["@%s" % recipe])
    assert "--lr_stratgy" in capsys.readouterr().err


def test_readme_gpu_command_for_mgn_parses_with_the_paper_schedule():
    from metric_learning import train_elem

    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    block = re.search(r"```bash\n(python metric_learning/train_elem.py --model ResNet50_vd --head mgn .*?)\n"
                      r"python metric_learning/eval.py", readme, re.S)
    assert block, "README.md has no GPU command for MGN on ResNet50_vd"
    args = train_elem.parse_args(shlex.split(block.group(1).replace("\\\n", " "))[2:])
    assert (args.head, args.image_shape, args.use_gpu) == ("mgn", (3, 384, 128), True)
    # the paper's 80 epochs of Market-1501's 12,936 training images in batches of 16 x 4, steps after 40 and 60
    iterations_per_epoch = 12936 / (16 * 4)
    assert args.train_batch_size == 64 and args.samples_each_class == 4
    assert args.total_iter_num == round(80 * iterations_per_epoch) == 16170
    assert args.lr_steps == "%d,%d" % (round(40 * iterations_per_epoch), round(60 * iterations_per_epoch))
    assert (args.lr, args.lr_decay, args.margin, args.label_smoothing) == (0.01, 0.1, 1.2, 0)
