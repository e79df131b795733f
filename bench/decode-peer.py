# The peer of bench/decode.bench.ts: pydicom 3 decoding the same 512 x 512 CT slice in the same transfer syntaxes,
# from memory, images per CPU-second (time.process_time counts every thread of the process). Run it interleaved with
# `npm run bench -- decode` so both see the same machine load:
#   python3 -m venv .peer && .peer/bin/pip install pydicom==3.0.2 pillow==12.3.0 numpy
#   .peer/bin/python bench/decode-peer.py
# Pillow is pydicom's decoder here for JPEG baseline (libjpeg-turbo) and JPEG 2000 (OpenJPEG 2.5.4); RLE and the
# native syntaxes are pydicom's own (numpy). One JSON line per syntax, like the medssl bench.
import io
import json
import os
import time

import PIL
import pydicom

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, '..', '..', 'shared', 'data', 'dicom', 'cornerstone3D')
SYNTAXES = [
    ('explicit-le', 'LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1', None),
    ('rle', 'RLELosslessTransferSyntax_1.2.840.10008.1.2.5', None),
    ('jpeg-baseline', 'JPEGProcess1TransferSyntax_1.2.840.10008.1.2.4.50', 'pillow'),
    ('jpeg2000-lossless', 'JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90', 'pillow'),
    ('jpeg2000', 'JPEG2000TransferSyntax_1.2.840.10008.1.2.4.91', 'pillow'),
]

for name, ts, plugin in SYNTAXES:
    raw = open(os.path.join(CORPUS, f'CTImage.dcm_{ts}.dcm'), 'rb').read()

    def once():
        ds = pydicom.dcmread(io.BytesIO(raw))
        return ds.pixel_array if plugin is None else pydicom.pixels.pixel_array(ds, decoding_plugin=plugin)

    for _ in range(5):
        once()
    n, c0, t0 = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < 1.5:
        once()
        n += 1
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    print(json.dumps({'name': f'pydicom/{name}', 'unit': 'images/s per core', 'value': n / cpu,
                      'config': {'pydicom': pydicom.__version__, 'pillow': PIL.__version__, 'plugin': plugin or 'pydicom',
                                 'images': n, 'cpuSeconds': cpu, 'wallImagesPerSecond': n / wall}}))
