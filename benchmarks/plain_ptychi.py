"""A plain, hand-written pty-chi LSQML reconstruction of a DATA-001 NPZ: the overhead baseline.

Usage: python plain_ptychi.py INPUT.npz OUTPUT.npz EPOCHS BATCH
Same conventions and settings as `flyrecon reconstruct` (blind object, probeGuess, seed 0).
"""

import math
import sys

import numpy as np
import ptychi.api as api
from ptychi.api.task import PtychographyTask

src, dst, epochs, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with np.load(src, allow_pickle=False) as f:
    amp, probe = f["diffraction"], f["probeGuess"]
    x, y = f["xcoords"], f["ycoords"]
n = probe.shape[0]
r0, c0 = math.floor(y.min() - n / 2) - 2, math.floor(x.min() - n / 2) - 2
r1, c1 = math.ceil(y.max() + n / 2) + 2, math.ceil(x.max() + n / 2) + 2
r1 += (r1 - r0) % 2
c1 += (c1 - c0) % 2
options = api.LSQMLOptions()
options.reconstructor_options.num_epochs = epochs
options.reconstructor_options.batch_size = batch
options.reconstructor_options.default_device = api.Devices.CPU
options.reconstructor_options.random_seed = 0
options.reconstructor_options.allow_nondeterministic_algorithms = False
options.object_options.optimizable = True
options.probe_options.optimizable = True
task = PtychographyTask(
    options,
    diffraction_data=amp.astype(np.float32) ** 2,
    object_data=np.ones((1, r1 - r0, c1 - c0), np.complex64),
    probe_data=probe[None, None],
    probe_position_x_px=x - c0 - (c1 - c0) / 2,
    probe_position_y_px=y - r0 - (r1 - r0) / 2,
)
task.run()
np.savez(
    dst,
    object=task.get_data_to_cpu("object", as_numpy=True)[0],
    probe=task.get_data_to_cpu("probe", as_numpy=True)[0, 0],
    loss=task.reconstructor.loss_tracker.table["loss"].to_numpy(),
)
