import argparse
import json
import sys

from metric_learning.config import schema
from metric_learning.models.reid_net import build_model


def training_args(**overrides):
    values = dict(model="MobileNetV3_small_x1_0", embedding_size=64, pooling="gem", last_stride=2, bnneck=False,
                  head="global", num_parts=6, image_shape=(3, 128, 64), loss_name="arcmargin")
    values.update(overrides)
    return argparse.Namespace(**values)


def test_training_config_round_trips_and_rebuilds_the_network(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train_elem.py", "--model", "MobileNetV3_small_x1_0"])
    schema.write_config(str(tmp_path), schema.training_config(training_args()))
    config = schema.read_config(str(tmp_path))
    assert json.load(open(tmp_path / schema.CONFIG_FILE)) == config
    assert schema.image_shape(config) == (3, 128, 64)
    assert config["argv"] == ["--model", "MobileNetV3_small_x1_0"] and config["loss_name"] == "arcmargin"
    net = build_model(**schema.model_kwargs(config))
    assert net.embedding_dim == 64 and net.bnneck is None and net.backbone.last_stride == 2


def test_a_part_head_config_rebuilds_its_head_and_an_older_config_the_global_head(tmp_path):
    from metric_learning.models.heads import PCBNet
    from metric_learning.models.reid_net import ReIDNet

    config = schema.training_config(training_args(head="pcb", num_parts=3, embedding_size=0, pooling="avg",
                                                  last_stride=1, bnneck=True))
    assert config["model"]["head"] == "pcb" and config["model"]["num_parts"] == 3
    net = build_model(**schema.model_kwargs(config))
    assert isinstance(net, PCBNet) and net.embedding_dim == 3 * 256
    older = {"model": {"model": "MobileNetV3_small_x1_0", "embedding_size": 0, "pooling": "avg", "last_stride": 1,
                       "bnneck": True}}   # written before --head existed
    assert isinstance(build_model(**schema.model_kwargs(older)), ReIDNet)


def test_a_config_without_image_shape_means_the_default_shape():
    assert schema.image_shape({"model": {}}) == schema.DEFAULT_IMAGE_SHAPE == (3, 256, 128)


def test_converted_config_records_its_source(tmp_path):
    kwargs = {"model": "OSNet_x0_25", "embedding_size": 0, "pooling": "avg", "last_stride": 2, "bnneck": False}
    config = schema.converted_config(kwargs, (3, 256, 128), "weights.pth")
    assert config["model"] == kwargs and config["argv"] == [] and config["image_shape"] == [3, 256, 128]
    assert config["converted_from"].endswith("weights.pth")
