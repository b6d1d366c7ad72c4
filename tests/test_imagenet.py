"""The ImageNet TFRecord pipeline on small generated shards: converter, sharding, augmentation,
bad data. Every shard here is written by `lars_hvd.data.make_tfrecords` (or, for the bad
cases, by its `example_bytes` around deliberately broken images)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from lars_hvd.data import imagenet, make_tfrecords, preprocess
from lars_hvd.data.make_tfrecords import Item
from lars_hvd.errors import UsageError

RAW_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/channels": tf.io.FixedLenFeature([], tf.int64),
    "image/colorspace": tf.io.FixedLenFeature([], tf.string),
    "image/filename": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
    "image/class/synset": tf.io.FixedLenFeature([], tf.string),
    "image/class/text": tf.io.FixedLenFeature([], tf.string),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
}


def read_all(files):
    rows = []
    for record in tf.data.TFRecordDataset(files):
        example = tf.io.parse_single_example(record, RAW_FEATURES)
        rows.append({k: v.numpy() for k, v in example.items()
                     if not isinstance(v, tf.SparseTensor)})
    return rows


def smooth_image(rng, height, width, grey=False):
    """A natural-ish image (smooth gradients + a little noise), so JPEG keeps it close."""
    y, x = np.mgrid[0:height, 0:width]
    channels = [(np.sin(x / (5 + 7 * rng.random())) + np.cos(y / (4 + 6 * rng.random()))) * 60
                + 128 for _ in range(1 if grey else 3)]
    image = np.stack(channels, axis=-1) + rng.normal(0, 2, (height, width, len(channels)))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folder_source(tmp_path_factory):
    """3 classes x 4 images: RGB JPEGs, RGB PNGs, a grey PNG, of different sizes."""
    root = tmp_path_factory.mktemp("src")
    rng = np.random.default_rng(0)
    sources = {}
    for c, name in enumerate(["n001", "n002", "n003"]):
        (root / name).mkdir()
        for k in range(4):
            h, w = 40 + 8 * k, 56 - 4 * c
            pixels = smooth_image(rng, h, w, grey=(k == 3))
            image = Image.fromarray(pixels[..., 0] if k == 3 else pixels)
            suffix = ".jpg" if k in (0, 1) else ".png"
            path = root / name / f"img{k}{suffix}"
            image.save(path, quality=90) if suffix == ".jpg" else image.save(path)
            sources[path.name + name] = (path, pixels, name, c + 1)
    return root, sources


def test_converter_round_trip(folder_source, tmp_path):
    root, sources = folder_source
    out = tmp_path / "out"
    assert make_tfrecords.main([str(root), str(out), "--shards", "3"]) == 0
    files = imagenet.list_shards(out, "train")
    assert [f.rsplit("/", 1)[1] for f in files] == [f"train-0000{i}-of-00003" for i in range(3)]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left
    rows = read_all(files)
    assert len(rows) == len(sources) == 12
    by_key = {r["image/filename"].decode() + r["image/class/synset"].decode(): r for r in rows}
    assert by_key.keys() == sources.keys()
    for key, (path, pixels, synset, label) in sources.items():
        row = by_key[key]
        assert row["image/class/label"] == label
        assert row["image/class/text"].decode() == synset
        assert row["image/format"] == b"JPEG" and row["image/colorspace"] == b"RGB"
        assert (row["image/height"], row["image/width"]) == pixels.shape[:2]
        assert row["image/channels"] == 3
        decoded = tf.io.decode_jpeg(row["image/encoded"], channels=3).numpy()
        assert decoded.shape == (*pixels.shape[:2], 3)
        if path.suffix == ".jpg":  # an RGB JPEG is stored byte for byte
            assert row["image/encoded"] == path.read_bytes()
        else:  # re-encoded at quality 95: close to the source pixels
            expected = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels
            assert np.abs(decoded.astype(float) - expected).mean() < 3.0, key
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["train"] == 12 and manifest["classes"] == 3
    assert manifest["class_names"] == ["n001", "n002", "n003"]


def test_converter_refuses_to_overwrite_and_replaces_on_request(folder_source, tmp_path):
    root, _ = folder_source
    out = tmp_path / "out"
    assert make_tfrecords.main([str(root), str(out), "--shards", "3"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert make_tfrecords.main([str(root), str(out), "--shards", "2"]) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    assert make_tfrecords.main([str(root), str(out), "--shards", "2", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("train")) == [
        "train-00000-of-00002", "train-00001-of-00002"]  # the 3-shard set is gone
    assert len(read_all(imagenet.list_shards(out, "train"))) == 12


def test_validation_split_reuses_the_class_numbering(folder_source, tmp_path):
    root, _ = folder_source
    out = tmp_path / "out"
    assert make_tfrecords.main([str(root), str(out), "--shards", "2"]) == 0
    only_third = tmp_path / "val"
    (only_third / "n003").mkdir(parents=True)
    for path in (root / "n003").iterdir():
        (only_third / "n003" / path.name).write_bytes(path.read_bytes())
    assert make_tfrecords.main([str(only_third), str(out), "--shards", "1",
                                "--split", "validation"]) == 0
    rows = read_all(imagenet.list_shards(out, "validation"))
    assert {r["image/class/label"] for r in rows} == {3}  # not 1: numbering from dataset.json
    manifest = json.loads((out / "dataset.json").read_text())
    assert (manifest["train"], manifest["validation"]) == (12, 4)


def test_converter_bad_source_image_skipped_or_fatal_never_half_written(folder_source,
                                                                         tmp_path, capsys):
    root, _ = folder_source
    broken = tmp_path / "src"
    for path in root.rglob("*"):
        target = broken / path.relative_to(root)
        if path.is_dir():
            target.mkdir(parents=True)
        else:
            target.write_bytes(path.read_bytes())
    (broken / "n002" / "img1.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    skipped = tmp_path / "skip"
    assert make_tfrecords.main([str(broken), str(skipped), "--shards", "2"]) == 0
    assert "img1.jpg: not a readable image" in capsys.readouterr().err
    assert len(read_all(imagenet.list_shards(skipped, "train"))) == 11

    fatal = tmp_path / "fatal"
    assert make_tfrecords.main([str(broken), str(fatal), "--shards", "2", "--on-bad-image",
                                "error", "--workers", "1"]) == 2
    assert "img1.jpg: not a readable image" in capsys.readouterr().err
    names = [p.name for p in fatal.iterdir()]
    assert not [n for n in names if n.startswith(".")]  # the partial file was removed
    assert "dataset.json" not in names  # the set is not declared complete
    for name in names:  # what carries a final name is a complete, readable shard
        assert read_all([str(fatal / name)])


# -- the reader -----------------------------------------------------------------------------

def write_items(out, items, shards, split="train"):
    make_tfrecords.convert(items, [f"c{i}" for i in range(len(items))], out, split, shards,
                           workers=2, on_bad_image="error", overwrite=False, source="test",
                           progress=False)
    return imagenet.list_shards(out, split)


@pytest.fixture(scope="module")
def id_shards(tmp_path_factory):
    """96 small images in 4 shards whose label is the example's id + 1."""
    rng = np.random.default_rng(1)
    items = [Item(name=f"{i}.jpg", label=i + 1, synset="s", text="t",
                  pixels=smooth_image(rng, 12, 16)) for i in range(96)]
    return write_items(tmp_path_factory.mktemp("ids"), items, 4)


def options(**kw):
    base = dict(size=8, channels=3, num_classes=96, shuffle_buffer=16, deterministic=True)
    return imagenet.ReaderOptions(**{**base, **kw})


def epoch_labels(files, world_size, epochs=2, per_worker_batch=4, **kw):
    """labels[epoch][rank] of one run, world_size workers."""
    per_rank = 96 // world_size
    out = [[None] * world_size for _ in range(epochs)]
    for rank in range(world_size):
        ds = imagenet.train_dataset(
            imagenet.train_files_for_rank(files, rank, world_size), options(**kw),
            examples_per_epoch=per_rank, batch_size=per_worker_batch, initial_epoch=0,
            epochs=epochs, counter=tf.Variable(0, dtype=tf.int64))
        labels = np.concatenate([y.numpy() for _, y in ds])
        assert len(labels) == epochs * per_rank
        for e in range(epochs):
            out[e][rank] = labels[e * per_rank:(e + 1) * per_rank]
    return out


@pytest.mark.parametrize("world_size", [1, 4])  # (2: the cached records' test below)
def test_every_example_exactly_once_per_epoch_across_ranks(id_shards, world_size):
    labels = epoch_labels(id_shards, world_size)
    for epoch in labels:
        seen = np.concatenate(epoch)
        assert sorted(seen) == list(range(96)), "each example once per epoch over all ranks"
    first, second = (np.concatenate(e) for e in labels)
    assert not np.array_equal(first, second), "the order changes from epoch to epoch"


def test_order_is_keyed_on_seed_and_epoch(id_shards):
    # (one worker: how the shards split among workers is the test above's)
    (a0, ), (a1, ) = epoch_labels(id_shards, 1, seed=3)
    (b0, ), (b1, ) = epoch_labels(id_shards, 1, seed=3)
    ((c0, ), ) = epoch_labels(id_shards, 1, epochs=1, seed=4)
    assert np.array_equal(a0, b0) and np.array_equal(a1, b1)
    assert not np.array_equal(a0, c0)
    # A resumed run (initial_epoch=1) reads epoch 1 exactly as the uninterrupted run did.
    resumed = imagenet.train_dataset(id_shards, options(seed=3), examples_per_epoch=96,
                                     batch_size=4, initial_epoch=1, epochs=2,
                                     counter=tf.Variable(0, dtype=tf.int64))
    assert np.array_equal(np.concatenate([y.numpy() for _, y in resumed]), a1)


def test_the_decoding_is_traced_once_for_all_epochs(id_shards, monkeypatch):
    # (Traced per epoch, the time to a run's first batch grew with its epochs.)
    traces = []

    def parse(record):
        traces.append(record)
        return parse.real(record)

    parse.real = imagenet._parse
    monkeypatch.setattr(imagenet, "_parse", parse)
    ds = imagenet.train_dataset(id_shards, options(), examples_per_epoch=8, batch_size=4,
                                initial_epoch=1, epochs=6, counter=tf.Variable(0, tf.int64))
    assert len([y for _, y in ds]) == 5 * 2
    assert len(traces) == 1


def test_evaluation_reads_every_example_once_even_with_fewer_shards_than_ranks(id_shards):
    for world_size in (3, 5):  # 4 shards: by shard for 3 (one rank reads 2), by record for 5
        seen = []
        for rank in range(world_size):
            ds = imagenet.eval_dataset(id_shards, options(), rank=rank, world_size=world_size,
                                       batch_size=7, counter=tf.Variable(0, dtype=tf.int64))
            seen += [int(v) for _, y in ds for v in y.numpy()]
        assert sorted(seen) == list(range(96)), world_size


def test_shard_counts_that_do_not_split_are_refused(id_shards):
    with pytest.raises(UsageError, match="4 training shards cannot be split evenly among 3 "
                                         "workers.*e.g. 1, 2, 4"):
        imagenet.train_files_for_rank(id_shards, 0, 3)
    with pytest.raises(UsageError, match="among 8 workers"):
        imagenet.train_files_for_rank(id_shards, 0, 8)


def test_missing_and_empty_directories_are_clear_errors(id_shards, tmp_path):
    with pytest.raises(UsageError, match="no train shards in .*make_tfrecords"):
        imagenet.list_shards(tmp_path, "train")
    with pytest.raises(UsageError, match="is not a directory"):
        imagenet.list_shards(tmp_path / "nowhere", "train")
    for f in id_shards:
        if not f.endswith("00002-of-00004"):
            (tmp_path / f.rsplit("/", 1)[1]).write_bytes(open(f, "rb").read())
    with pytest.raises(UsageError, match="3 of the 4 train shards; missing: "
                                                "train-00002-of-00004"):
        imagenet.list_shards(tmp_path, "train")


# -- augmentation ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photo_shards(tmp_path_factory):
    rng = np.random.default_rng(2)
    items = [Item(name=f"{i}.jpg", label=i % 3 + 1, synset="s", text="t",
                  pixels=smooth_image(rng, 300 + 20 * i, 400 - 30 * i)) for i in range(6)]
    return write_items(tmp_path_factory.mktemp("photos"), items, 2)


# Every pair of (recipe, pixels, channels) values once: 4 cases.
@pytest.mark.parametrize("size,channels,augment,pixels", [
    (224, 3, "inception", "uint8"), (227, 3, "crop", "float32"), (28, 1, "crop", "uint8"),
    (28, 1, "inception", "float32")])
def test_augmentation_shapes_and_ranges(photo_shards, size, channels, augment, pixels):
    opts = options(size=size, channels=channels, num_classes=3, augment=augment, pixels=pixels)
    low, high = preprocess.value_range(channels) if pixels == "float32" else (0, 255)
    spread = 0.05 if pixels == "float32" else 0.05 * 57  # (a normalized unit is ~57 levels)
    train = imagenet.train_dataset(photo_shards, opts, examples_per_epoch=6, batch_size=3,
                                   initial_epoch=0, epochs=1,
                                   counter=tf.Variable(0, dtype=tf.int64))
    evaluation = imagenet.eval_dataset(photo_shards, opts, rank=0, world_size=1, batch_size=6,
                                       counter=tf.Variable(0, dtype=tf.int64))
    read = {}
    for name, ds in (("train", train), ("eval", evaluation)):
        batches = list(ds)
        images = read[name] = np.concatenate([x.numpy() for x, _ in batches])
        assert images.shape == (6, size, size, channels), name
        assert images.dtype == np.dtype(pixels)
        assert images.min() >= low - 1e-4 and images.max() <= high + 1e-4, name
        assert images.std(axis=(1, 2, 3)).min() > spread, f"{name}: a blank image"
        assert set(np.concatenate([y.numpy() for _, y in batches])) <= {0, 1, 2}
    # Training crops are random (per example and epoch), evaluation is not.
    again = np.concatenate([x.numpy() for x, _ in imagenet.train_dataset(
        photo_shards, options(size=size, channels=channels, num_classes=3, augment=augment,
                              seed=9, pixels=pixels), examples_per_epoch=6, batch_size=3,
        initial_epoch=0, epochs=1, counter=tf.Variable(0, dtype=tf.int64))])
    assert not np.allclose(np.sort(read["train"].ravel()), np.sort(again.ravel()))
    assert np.array_equal(np.concatenate([x.numpy() for x, _ in evaluation]), read["eval"])


def test_eval_crop_is_the_center_of_the_image():
    """Evaluation = resize the shorter side to 256, center-crop 224 (in one decode)."""
    pixels = np.zeros((256, 320, 3), np.uint8)
    pixels[16:240, 48:272] = 200  # exactly the central 224 x 224 square
    encoded = tf.io.encode_png(pixels)
    image = preprocess.eval_image(encoded, size=224, channels=3).numpy()
    expected = (200 - np.array(preprocess.MEAN_RGB)) / np.array(preprocess.STDDEV_RGB)
    np.testing.assert_allclose(image, np.broadcast_to(expected, image.shape), rtol=1e-5)


# -- bad data -------------------------------------------------------------------------------

def good_jpeg(rng):
    out = io.BytesIO()
    Image.fromarray(smooth_image(rng, 20, 24)).save(out, format="JPEG")
    return out.getvalue()


def write_raw_shard(path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)


def example(image: bytes, label: int, name: str = "x.jpg") -> bytes:
    item = Item(name=name, label=label, synset="s", text="t")
    return make_tfrecords.example_bytes(item, image, 20, 24)


@pytest.fixture
def bad_shards(tmp_path):
    """One shard: good, undecodable JPEG, good, a record that is not an Example, good."""
    rng = np.random.default_rng(3)
    records = [example(good_jpeg(rng), 1), example(b"\xff\xd8\xff garbage", 2),
               example(good_jpeg(rng), 2), b"not a tf.train.Example at all",
               example(good_jpeg(rng), 3)]
    write_raw_shard(tmp_path / "train-00000-of-00001", records)
    return imagenet.list_shards(tmp_path, "train")


def read_eval(files, **kw):
    counter = tf.Variable(0, dtype=tf.int64)
    ds = imagenet.eval_dataset(files, options(num_classes=3, **kw), rank=0, world_size=1,
                               batch_size=2, counter=counter)
    labels = [int(v) for _, y in ds for v in y.numpy()]
    return labels, int(counter.numpy())


def test_bad_records_are_skipped_counted_and_printed(bad_shards, capfd):
    labels, skipped = read_eval(bad_shards)
    assert labels == [0, 1, 2] and skipped == 2
    err = capfd.readouterr().err
    assert "skipped bad data: " in err
    assert f"{bad_shards[0]} record 1: undecodable image" in err
    assert f"{bad_shards[0]} record 3: undecodable image or unparseable record" in err


def test_bad_records_error_mode_names_file_and_record(bad_shards):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"train-00000-of-00001 record 1"):
        read_eval(bad_shards, bad_records="error")


def test_bad_record_limit(bad_shards):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"more than.*1.*bad records on this worker.*record 3"):
        read_eval(bad_shards, max_bad_records=1)


def test_label_out_of_range_is_an_error_naming_the_file(tmp_path):
    rng = np.random.default_rng(4)
    write_raw_shard(tmp_path / "train-00000-of-00001",
                    [example(good_jpeg(rng), 1), example(good_jpeg(rng), 4)])
    files = imagenet.list_shards(tmp_path, "train")
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"label.*4.*out of range.*train-00000-of-00001.*record.*1"):
        read_eval(files)
    with pytest.raises(tf.errors.InvalidArgumentError, match="out of range"):
        read_eval(files, label_offset=0)  # 0-based labels: 4 is out of 0..2 as well


@pytest.mark.parametrize("damage", ["flipped byte", "truncated"])
def test_corrupt_or_truncated_shard_is_found(tmp_path, damage, capfd):
    rng = np.random.default_rng(5)
    records = [example(good_jpeg(rng), 1 + i % 3) for i in range(6)]
    path = tmp_path / "train-00000-of-00001"
    write_raw_shard(path, records)
    raw = bytearray(path.read_bytes())
    cut = len(raw) * 2 // 3
    if damage == "flipped byte":
        raw[cut] ^= 0xFF
    else:
        raw = raw[:cut]
    path.write_bytes(bytes(raw))
    labels, skipped = read_eval([str(path)])
    assert skipped == 1 and 0 < len(labels) < 6
    assert "corrupt or truncated shard, only" in capfd.readouterr().err
    with pytest.raises(tf.errors.InvalidArgumentError, match="corrupt or truncated shard"):
        read_eval([str(path)], bad_records="error")


def test_clean_shards_count_nothing(id_shards):
    counter = tf.Variable(0, dtype=tf.int64)
    ds = imagenet.eval_dataset(id_shards, options(), rank=0, world_size=1, batch_size=32,
                               counter=counter)
    assert sum(int(x.shape[0]) for x, _ in ds) == 96 and int(counter.numpy()) == 0


# -- through the training entry point -------------------------------------------------------

needs_fashion_mnist = pytest.mark.fashion_mnist


@pytest.fixture(scope="module")
def fashion_shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("fashion")
    for split, shards, count in (("train", 4, 1200), ("validation", 2, 300)):
        assert make_tfrecords.main(["default", str(out), "--source", "fashion-mnist",
                                    "--split", split, "--shards", str(shards),
                                    "--max-examples", str(count)]) == 0
    return out


@pytest.mark.slow
@needs_fashion_mnist
def test_train_entry_point_reads_imagenet_shards(fashion_shards, tmp_path, capsys):
    from lars_hvd.train import main

    summary = main(["--dataset", "imagenet", "--data-dir", str(fashion_shards),
                    "--model", "small_cnn_bn", "--augment", "crop", "--global-batch-size",
                    "100", "--epochs", "2", "--warmup-epochs", "0.5", "--learning-rate", "3",
                    "--run-dir", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert "over 1200 examples" in out and "-> 10 classes" in out  # from dataset.json
    assert "bad records skipped: 0 over all workers and epochs" in out
    assert summary.epochs_run == 2
    assert summary.test_accuracy is not None and summary.test_accuracy > 0.4  # chance: 0.1


@needs_fashion_mnist
def test_train_entry_point_refuses_bad_data_dirs_before_training(fashion_shards, tmp_path):
    from lars_hvd.train import main

    base = ["--dataset", "imagenet", "--model", "small_cnn_bn", "--global-batch-size", "100",
            "--epochs", "2", "--run-dir", str(tmp_path / "run")]
    with pytest.raises(UsageError, match="--dataset imagenet needs --data-dir"):
        main(base)
    with pytest.raises(UsageError, match="no train shards"):
        main([*base, "--data-dir", str(tmp_path)])
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


@pytest.mark.parametrize("cache", ["memory", "file"])
def test_cached_records_still_give_every_example_once_per_epoch(id_shards, cache, tmp_path):
    spec = "memory" if cache == "memory" else str(tmp_path / "cache")
    labels = epoch_labels(id_shards, 2, cache=spec)
    for epoch in labels:
        assert sorted(np.concatenate(epoch)) == list(range(96))
    assert not np.array_equal(np.concatenate(labels[0]), np.concatenate(labels[1]))
    seen = [int(v) for _, y in imagenet.eval_dataset(
        id_shards, options(cache=spec), rank=0, world_size=1, batch_size=32,
        counter=tf.Variable(0, dtype=tf.int64)) for v in y.numpy()]
    assert sorted(seen) == list(range(96))
