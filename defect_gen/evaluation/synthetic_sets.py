"""
The synthetic sets of an evaluation: each loaded, checked by the guard, selected per synthetic ratio,
and described (memorisation, diversity, mask statistics and, with weights given, FID / KID).
"""

import logging
import time

import numpy as np

from ..data.stats import mask_statistics
from ..errors import EvaluationError
from ..sampling.score import score_of
from . import fid as fid_lib
from . import similarity
from .amount import amounts
from .data import load_synthetic
from .guard import ValidationIdentity, allowed_problem, check_synthetic_set
from .plan import ratios
from .realism import class_references, realism_distances
from .selection import select_synthetic, shortfall_sentences

logger = logging.getLogger(__name__)


def selection_measures(how, pairs, train, num_defect):
    """
    Give (scores, distances) that selection `how` ranks the PairSet `pairs` by: the sample scores for
    `scored`, the realism distances to the real training PairSet `train` for `realistic` (never the
    reported images), else None.
    """
    scores = distances = None
    if how == "scored":
        scores = [score_of(i, m) for i, m in zip(pairs.images, pairs.masks)]
    if how == "realistic":
        references = class_references(train.images, train.masks, num_defect)
        distances = realism_distances(pairs.images, pairs.masks, references)
    return scores, distances


def load_sets(config, sets, real, timings):
    """Give per set {folder, pairs, manifest, guard, selections}; refuse on guard problems."""
    out = {}
    if not sets:
        return out
    identity = ValidationIdentity(
        config.data_dir, real.val.names, num_defect=config.num_defect, classes=config.classes
    )
    rows = amounts(config, ratios(config))
    for name, folder in sets:
        t0 = time.perf_counter()
        synthetic = load_synthetic(folder, num_defect=real.num_defect, resolution=config.resolution)
        guard = check_synthetic_set(
            folder,
            synthetic.manifest,
            real=real,
            identity=identity,
            num_train_per_type=config.num_train_per_type,
        )
        if guard["problems"] and not config.allow_overlap:
            raise EvaluationError(guard["problems"][0])
        guard["problems"] = [allowed_problem(p) for p in guard["problems"]]
        for problem in guard["problems"]:
            logger.warning("synthetic set %s: %s", name, problem)
        selections = {}
        scores, distances = selection_measures(
            config.synthetic_select, synthetic.pairs, real.train, real.num_defect
        )
        for am in rows:
            r = am.ratio
            want = am.want(len(real.train))
            if am.count is not None and am.count > len(synthetic.pairs):
                raise EvaluationError(
                    f"--synthetic_count {am.count}: set {name} ({folder}) holds only "
                    f"{len(synthetic.pairs)} pairs"
                )
            indices, record = select_synthetic(
                synthetic.pairs.masks,
                real.train.masks,
                num_defect=real.num_defect,
                want=want,
                how=config.synthetic_select,
                scores=scores,
                distances=distances,
            )
            record["ratio"] = r
            record["count"], record["share"] = am.count, am.share
            record["statements"] = shortfall_sentences(record, real.classes)
            for sentence in record["statements"]:
                logger.warning("synthetic set %s, %s: %s", name, _label(am), sentence)
            if not indices:
                raise EvaluationError(
                    f"{folder}: no synthetic pair fits --synthetic_select "
                    f"{config.synthetic_select} (no pair holds a defect of a class the real "
                    "training pairs have)"
                )
            record["files"] = [synthetic.pairs.names[i] for i in indices]
            if scores is not None:
                record["scores"] = [scores[i] for i in indices]
            if distances is not None:
                record["realism_distances"] = [distances[i] for i in indices]
            selections[am] = (synthetic.pairs.subset(indices), record)
            logger.info(
                "synthetic set %s: %d pairs, %d selected (%s) for %s",
                name,
                len(synthetic.pairs),
                len(indices),
                config.synthetic_select,
                _label(am),
            )
        out[name] = dict(
            folder=str(folder), synthetic=synthetic, guard=guard, selections=selections
        )
        timings[f"load_synthetic:{name}"] = time.perf_counter() - t0
    return out


def describe_set(config, name, item, real):
    """Give (the report entry of one loaded set, its memorisation examples for the figure)."""
    synthetic = item["synthetic"]
    selections = {_key(am): record for am, (_, record) in item["selections"].items()}
    entry = {
        "folder": item["folder"],
        "num_pairs": len(synthetic.pairs),
        "manifest": synthetic.manifest,
        "guard": {
            "problems": item["guard"]["problems"],
            "overridden": bool(item["guard"]["problems"]),
            "generators": item["guard"]["generators"],
        },
        "selection": selections,
        "memorisation": None,
        "diversity": None,
        "mask_stats": mask_statistics(synthetic.pairs.masks, real.num_defect),
        "fid": _fid_not_computed("no --inception_weights given"),
    }
    examples = []
    gen_feats = similarity.thumbnail_features(synthetic.pairs.images)
    train_feats = similarity.thumbnail_features(real.train.images)
    if len(real.train) >= 2:
        mem = similarity.memorisation(
            gen_feats, train_feats, threshold=config.memorisation_threshold
        )
        mem["feature"] = f"{similarity.DEFAULT_FEATURE_SIZE}x{similarity.DEFAULT_FEATURE_SIZE} "
        mem["feature"] += "grayscale, RMS distance per pixel in [0, 1]"
        mem["generated_files"] = synthetic.pairs.names
        entry["memorisation"] = mem
        order = np.argsort(mem["ratio"], kind="stable")[: config.num_examples]
        for g in order:
            t = mem["nn_index"][g]
            # Show the training image as it was matched: mirrored when its mirror was nearer.
            flip = slice(None, None, -1) if mem["nn_mirrored"][g] else slice(None)
            examples.append(
                (
                    synthetic.pairs.images[g],
                    synthetic.pairs.masks[g],
                    real.train.images[t][:, flip],
                    real.train.masks[t][:, flip],
                    mem["ratio"][g],
                    int(g),
                    int(t),
                )
            )
    else:
        logger.warning("memorisation needs at least 2 training images; skipped")
    entry["diversity"] = similarity.diversity(gen_feats, train_feats)
    if config.inception_weights:
        extractor = fid_lib.load_feature_extractor(config.inception_weights, config.device)
        values = fid_lib.fid_kid(
            extractor,
            synthetic.pairs.images,
            {"real_train": real.train.images, "real_val": real.val.images},
            size=config.inception_size,
            input_range=config.inception_range,
            device=config.device,
        )
        entry["fid"] = dict(computed=True, weights=str(config.inception_weights), **values)
    return entry, examples


def _fid_not_computed(reason):
    return {"computed": False, "reason": reason, "fid": None, "kid": None}


def _label(am):
    return f"ratio {am.ratio:g}" if am.count is None and am.share is None else am.suffix()


def _key(am):
    return f"{am.ratio:g}" if am.count is None and am.share is None else am.suffix()
