"""
Timestep respacing: sample with fewer steps than the model was trained with.

A respaced process keeps a subset of the original timesteps. Its betas are recomputed from the kept
``alphas_cumprod`` so that it is an exact diffusion process, and models keep receiving *original* timesteps.
"""


def space_timesteps(num_timesteps, section_counts):
    """
    Give the set of original timesteps to keep.

    :param num_timesteps: steps of the original process.
    :param section_counts: a string or list. ``"ddimN"`` keeps every k-th step, with the stride k that
        yields exactly N steps (as DDIM does). Otherwise, comma-separated counts: the process is cut into
        as many equal sections and each section is sampled evenly with its count, e.g. ``"10,15,20"`` takes
        10 steps from the first third, 15 from the second and 20 from the last; ``"100"`` is 100 even steps.
    :return: a set of ints in [0, num_timesteps).
    """
    if isinstance(section_counts, int):
        section_counts = [section_counts]
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = int(section_counts[len("ddim") :])
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == desired:
                    return set(range(0, num_timesteps, stride))
            if desired == num_timesteps:
                return set(range(num_timesteps))
            raise ValueError(
                f"cannot make exactly {desired} steps from {num_timesteps} with an even stride"
            )
        section_counts = [int(x) for x in section_counts.split(",")]
    section_counts = [int(x) for x in section_counts]
    size_per, extra = divmod(num_timesteps, len(section_counts))
    start = 0
    kept = []
    for i, count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(f"cannot take {count} steps from a section of {size} steps")
        if count < 1:
            raise ValueError("each section needs at least one step")
        stride = 1 if count == 1 else (size - 1) / (count - 1)
        pos = 0.0
        for _ in range(count):
            kept.append(start + round(pos))
            pos += stride
        start += size
    return set(kept)


def sampling_timesteps(num_timesteps, timestep_respacing=None):
    """
    Give the original timesteps a sampler visits, in descending order.

    :param timestep_respacing: None or "" for every step, else as :func:`space_timesteps` takes it.
    """
    if timestep_respacing is None or str(timestep_respacing) in ("", str(num_timesteps)):
        return list(range(num_timesteps - 1, -1, -1))
    return sorted(space_timesteps(num_timesteps, timestep_respacing), reverse=True)
