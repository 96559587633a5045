#!/usr/bin/env python3
"""Write the hand-made seed corpora of the fuzz harnesses.

    tests/fuzz/gen-corpus.py [CORPUS-DIR]   (default: tests/fuzz/corpus)

Seeds are small valid inputs (so the fuzzer starts deep in each parser)
and one input per rejection path worth keeping.  The files are committed;
run this only to change the seeds.  Inputs the fuzzers found (crashers,
after their fix, and a few interesting ones) are committed next to these
under names that do not start with 'seed-', and this script leaves them.
"""
import gzip
import os
import struct
import sys
import zlib

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), 'corpus')


def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, 'seed-' + name), 'wb') as f:
        f.write(data)


def gz(data):
    # mtime 0: the same bytes on every run
    return gzip.compress(data.encode() if isinstance(data, str) else data, mtime=0)


# ---- block: 4 control bytes, then the block (see fuzz_block.c)
def hdr(enc, count, dim, first=0, sender=1, kind=7, rnd=3, seed=0, magic=0x4853, version=1, reserved=0):
    return struct.pack('<HBBHHIIIIQQ', magic, version, enc, kind, reserved, sender, count, dim, first, rnd, seed)


def f32(*v):
    return struct.pack('<%df' % len(v), *v)


def u32(*v):
    return struct.pack('<%dI' % len(v), *v)


LIM = bytes([7, 0, 0, 0])  # limits from the block's own header
put('block', 'dense', LIM + hdr(1, 3, 8, first=2) + f32(1.5, -2.0, 0.25))
put('block', 'dense-empty', LIM + hdr(1, 0, 8))
put('block', 'indexed', LIM + hdr(2, 2, 64) + u32(3, 40) + f32(0.5, -0.5))
put('block', 'masked', LIM + hdr(3, 4, 16, seed=0x1234) + f32(1, 2, 3, 4))
put('block', 'limits-from-control', bytes([0x40, 4, 8, 0]) + hdr(1, 2, 8) + f32(1, 2))
put('block', 'misaligned', bytes([15, 0, 0, 0]) + hdr(1, 1, 8) + f32(1))
put('block', 'bad-magic', LIM + hdr(1, 1, 8, magic=0x1111) + f32(1))
put('block', 'bad-version', LIM + hdr(1, 1, 8, version=2) + f32(1))
put('block', 'truncated', LIM + hdr(2, 3, 64) + u32(1, 2, 3) + f32(1, 2))
put('block', 'count-over-dim', LIM + hdr(1, 9, 8) + f32(*range(9)))
put('block', 'unsorted', LIM + hdr(2, 2, 64) + u32(9, 3) + f32(1, 2))
put('block', 'index-range', LIM + hdr(2, 1, 64) + u32(64) + f32(1))
put('block', 'nan', LIM + hdr(1, 2, 8) + f32(1, float('nan')))
put('block', 'dense-beyond-dim', LIM + hdr(1, 2, 8, first=7) + f32(1, 2))
put('block', 'seed-on-dense', LIM + hdr(1, 1, 8, seed=5) + f32(1))

# ---- LIBSVM: the file
put('libsvm', 'binary', '+1 1:0.5 3:-1.25\n-1 2:1e-3 4:7\n+1 1:1 2:2 3:3 4:4\n')
put('libsvm', 'multiclass', '1 1:1\n2 2:1 5:0.5\n3 3:1\n# comment\n\n3 1:2 7:1e2 # trailing\n')
put('libsvm', 'zero-one-no-newline', '0 1:1\r\n1 2:1\t3:4')
put('libsvm', 'no-features', '1\n-1\n')
put('libsvm', 'gzip', gz('1 1:1 2:2\n2 3:3\n'))
# Past the reader's 128 KiB buffer once inflated: lines that straddle a
# refill, and one line longer than a quarter of the buffer (no memmove).
short = ''.join('%d 1:0.5 7:%d\n' % (i % 3, i % 97) for i in range(9000))
put('libsvm', 'gzip-refills', gz(short * 2))
put('libsvm', 'gzip-long-line', gz(short + '1 ' + ' '.join('%d:1' % j for j in range(1, 7001)) + '\n' + short))
put('libsvm', 'index-zero', '1 0:1\n')
put('libsvm', 'decreasing', '1 3:1 2:1\n')
put('libsvm', 'missing-colon', '1 3\n')
put('libsvm', 'no-label', '1:2 3:4\n')
put('libsvm', 'nan', '1 1:nan\n')
put('libsvm', 'overflow', '1 1:1e39\n1 4294967296:1\n')
put('libsvm', 'label-fraction', '1.5 1:1\n')
put('libsvm', 'nul', '1 1:1\n1 2:\x001\n')
put('libsvm', 'comments-only', '# nothing\n\n   \n')


# ---- IDX: 2-byte length of the images file, images, labels
def idx_images(n, rows, cols, pix, magic=0x803):
    return struct.pack('>IIII', magic, n, rows, cols) + bytes(pix)


def idx_labels(n, lab, magic=0x801):
    return struct.pack('>II', magic, n) + bytes(lab)


def idx_input(images, labels):
    return struct.pack('<H', len(images)) + images + labels


img = idx_images(2, 2, 3, [0, 255, 17, 34, 51, 68, 85, 102, 119, 136, 153, 170])
lab = idx_labels(2, [3, 9])
put('idx', 'plain', idx_input(img, lab))
put('idx', 'gzip', idx_input(gz(img), gz(lab)))
put('idx', 'gzip-images-plain-labels', idx_input(gz(img), lab))
# more than one 64 KiB read of pixels
put('idx', 'gzip-chunks', idx_input(gz(idx_images(100, 28, 28, [i % 251 for i in range(78400)])),
                                    gz(idx_labels(100, [i % 10 for i in range(100)]))))
put('idx', 'label-ten', idx_input(img, idx_labels(2, [3, 10])))
put('idx', 'count-mismatch', idx_input(img, idx_labels(3, [1, 2, 3])))
put('idx', 'truncated-pixels', idx_input(img[:-3], lab))
put('idx', 'trailing-byte', idx_input(img + b'\0', lab))
put('idx', 'bad-magic', idx_input(idx_images(2, 2, 3, range(12), magic=0x801), lab))
put('idx', 'zero-rows', idx_input(idx_images(2, 0, 3, []), lab))
put('idx', 'huge-header', idx_input(idx_images(0xffffffff, 0xffff, 0xffff, [1, 2, 3]), idx_labels(0xffffffff, [1])))
put('idx', 'truncated-gzip', idx_input(gz(img)[:-6], lab))


# ---- model: the file (format in algo/hetsgd_algo.h)
def model(vals, version=1, hdrlen=64, d=None, kind=1, p=2, classes=2, hidden=0, flags=1, crc=None):
    body = f32(*vals)
    d = len(vals) if d is None else d
    crc = zlib.crc32(body) if crc is None else crc
    h = b'HSGDMDL1' + struct.pack('<IIQIIIIIIQQ', version, hdrlen, d, kind, p, classes, hidden, flags, crc, 0xfeed, 0)
    return h + body


put('model', 'valid', model([0.5, -1, 2, 0.125, 3, 4]))
put('model', 'one-value', model([1.0]))
put('model', 'bad-crc', model([1, 2, 3], crc=1))
put('model', 'truncated', model([1, 2, 3])[:-2])
put('model', 'over-long', model([1, 2, 3]) + b'\0\0\0\0')
put('model', 'bad-version', model([1, 2], version=2))
put('model', 'bad-header-size', model([1, 2], hdrlen=72))
put('model', 'd-zero', model([], d=0))
put('model', 'd-huge', model([1], d=1 << 61))
put('model', 'bad-magic', b'HSGDMDL2' + model([1])[8:])
put('model', 'short', b'HSGDMDL1\1\0\0\0')

# ---- ckpt: the checkpoint file (format in algo/hetsgd_model.h)
def ckpt(vals, n=2, config=b'method = asgd\nworkers = 2\n', extra=b'0.000,0,0,0,2.3,,,0,,,,,0\n',
         method=1, version=1, hdrlen=128, total=None, crc=None, t=1.5, worker=None):
    body = f32(*vals)
    w = worker if worker is not None else struct.pack('<6Q4d', 10, 0, 0, 0, 0, 10, 0.5, 0.1, 1.5, 0.002)
    payload = body + w * n + config + extra
    total = 128 + len(payload) if total is None else total
    h = b'HSGDCKP1' + struct.pack('<IIQIIIIQQdQQQQQQ', version, hdrlen, total, 0, method, n, 0, len(vals),
                                  0x1234, t, 7, 7, 20, 0, len(config), len(extra)) + b'\0' * 16
    f = h + payload
    c = zlib.crc32(f) if crc is None else crc
    return f[:24] + struct.pack('<I', c) + f[28:]


put('ckpt', 'valid', ckpt([0.5, -1, 2, 0.125]))
put('ckpt', 'one-worker', ckpt([1.0], n=1, config=b'method = loscar\n', extra=b'', method=3))
put('ckpt', 'bad-crc', ckpt([1, 2], crc=1))
put('ckpt', 'truncated', ckpt([1, 2, 3])[:-2])
put('ckpt', 'over-long', ckpt([1, 2, 3]) + b'\0')
put('ckpt', 'bad-version', ckpt([1], version=2))
put('ckpt', 'bad-method', ckpt([1], method=9))
put('ckpt', 'nan-time', ckpt([1], t=float('nan')))
put('ckpt', 'negative-worker-time', ckpt([1], worker=struct.pack('<6Q4d', 1, 0, 0, 0, 0, 1, -1.0, 0, 0, 0)))
put('ckpt', 'nul-in-config', ckpt([1], config=b'method\0 = asgd\n'))
put('ckpt', 'bad-total', ckpt([1], total=1 << 62))
put('ckpt', 'short', b'HSGDCKP1\1\0\0\0')

# ---- config: the file
put('config', 'loscar', '# a LOSCAR run\nmethod = loscar\nmerge = delay-corrected\noverlap = no\nk-fraction = 0.1\n'
    'round-time = 0.02\ndata = synth\nsynth-n = 5000\nsynth-p = 16\nworkers = 3\nprofile = sqrt\nseed = 42\n'
    'time = 2\nname = run-1\nno-plots\n')
put('config', 'asgd', 'method asgd\npolicy ringmaster\nringmaster-r 4\nobjective softmax\nbias yes\nlambda 0.001\n'
    'data = fashion-mnist\nsplit = dirichlet\nalpha = 0.3\ngamma = 0.05\nbatch = 64\nthreads = 2\npin = auto\n'
    'provider = shm\nprogress = plain\nlaunch = local\nforce\n')
put('config', 'quad', 'objective = quad\ndim = 1000\nmethod = sync\ntarget-loss = 1e-6\neval-interval = 0.1\r\n')
put('config', 'libsvm-per-worker', 'objective = logreg\ndata-per-worker = part-{i}.svm\ntest = test.svm\nepochs = 3\n'
    'target-acc = 0.9\nout = runs/x\n\t  \n   # indented comment\n')
put('config', 'mlp', 'objective=mlp\nhidden=128\ndata=synth-regression\n')
put('config', 'unknown-option', 'methd = asgd\n')
put('config', 'missing-value', 'method =\n')
put('config', 'flag-with-value', 'force = yes\n')
put('config', 'nested-config', 'config = other.conf\n')
put('config', 'contradiction', 'method = asgd\nmerge = overwrite\n')
put('config', 'out-of-range', 'workers = 0\n')
put('config', 'long-line', 'name = ' + 'x' * 5000 + '\n')
put('config', 'bad-number', 'gamma = 1e400\n')
put('config', 'nul-byte', 'method = a\0sgd\n')


# ---- rendezvous: 1 selector byte (0 HELLO, 1 CHAL, 2 PROOF, 3 WELCOME,
# 4 REQ, 5 REP), then the message (see fuzz_rendezvous.c)
def rdv(sel, name, msg):
    put('rendezvous', name, bytes([sel]) + msg)


nonce = bytes(range(16))
rdv(0, 'hello', b'HGTB' + struct.pack('<HHII', 1, 0, 2, 4) + nonce)
rdv(0, 'hello-short', b'HGTB' + struct.pack('<HH', 1, 0))
rdv(0, 'hello-v2', b'HGTB' + struct.pack('<HHII', 2, 0, 2, 4) + nonce)
rdv(1, 'chal', b'HGTB' + struct.pack('<HHII', 1, 0, 4, 0) + nonce)
rdv(2, 'proof', b'\x01\x02\x03\x04\x05\x06\x07\x08')
rdv(3, 'welcome', struct.pack('<II', 0, 4) + bytes(8))
rdv(3, 'welcome-dup', struct.pack('<II', 3, 4) + bytes(8))
rdv(4, 'req-allgather', struct.pack('<IIQ', 1, 0, 3000))
rdv(4, 'req-huge', struct.pack('<IIQ', 1, 0, 1 << 40))
rdv(5, 'rep', struct.pack('<IIIIQIIQ', 1, 0, 0, 0, 12000, 0, 0, 0))
rdv(5, 'rep-mismatch', struct.pack('<IIIIQIIQ', 1, 3, 1, 2, 0, 2, 3, 64))


# ---- connect: 1 control byte (bit 0: an answer; bit 1: re-prove with the
# job key), then the rdma_cm private data (see fuzz_connect.c)
def conn(ctl, name, typ, rank=2, target=0, rkey=0x1234, ring=0x7f0000001000, nonce=9, mac=0):
    put('connect', name, bytes([ctl]) + struct.pack('<BBBBIIIQQQ', 0x68, 0x63, 1, typ, rank, target, rkey,
                                                     ring, nonce, mac))


conn(2, 'req-proven', 1)
conn(3, 'rep-proven', 2)
conn(2, 'abort-proven', 3)
conn(0, 'req-unproven', 1)
conn(0, 'rep-as-req', 2)
put('connect', 'short', b'\x00hc\x01\x01')
put('connect', 'junk-56', b'\x00' + b'\x5a' * 56)
