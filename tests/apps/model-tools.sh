#!/bin/bash
# A model's life after training: hetsgd-eval prints loss and accuracy on a
# data set, hetsgd-model shows it and exports it as npy and txt, and both
# refuse a corrupt or mismatched model with one sentence.
set -u
b=${HETSGD_BUILDDIR:-.}
train=$b/apps/hetsgd-train
evalp=$b/apps/hetsgd-eval
model=$b/apps/hetsgd-model
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-model-tools.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "PASS: $*"; }
ko() { echo "FAIL: $*"; fails=$((fails + 1)); }

# two separable classes in 4 features, as LIBSVM text
awk 'BEGIN { srand(3); for (i = 0; i < 600; i++) { y = i % 2; s = y ? 1 : -1;
	printf "%d 1:%.3f 2:%.3f 3:%.3f 4:%.3f\n", y, s + rand() - 0.5, s * 0.5 + rand() - 0.5, rand(), rand() } }' > "$tmp/d.svm"
head -n 200 "$tmp/d.svm" > "$tmp/t.svm"
if ! "$train" --data "$tmp/d.svm" --test "$tmp/t.svm" --objective softmax --workers 2 --time 2 \
	--no-plots --progress none --out "$tmp/run" > "$tmp/train.log" 2>&1; then
	ko "training the model to evaluate: $(tail -n 3 "$tmp/train.log")"
	exit 1
fi
m=$tmp/run/model.bin

out=$("$evalp" "$m" --data "$tmp/t.svm" 2>&1)
acc=$(sed -n 's/^accuracy = //p' <<<"$out")
loss=$(sed -n 's/^loss = //p' <<<"$out")
if awk -v a="$acc" -v l="$loss" 'BEGIN { exit !(a >= 0.9 && a <= 1 && l > 0 && l < 0.7) }'; then
	ok "hetsgd-eval: loss $loss, accuracy $acc on 200 samples"
else
	ko "hetsgd-eval on separable data: $out"
fi
csv=$("$evalp" "$m" --data "$tmp/t.svm" --csv 2>&1)
[[ $csv == "$m,$tmp/t.svm,200,"* ]] && ok "hetsgd-eval --csv: $csv" || ko "hetsgd-eval --csv: $csv"

info=$("$model" info "$m" 2>&1)
grep -q '^objective = softmax$' <<<"$info" && grep -q '^d = 10$' <<<"$info" &&
	ok "hetsgd-model info: softmax, d = 10" || ko "hetsgd-model info: $info"

"$model" export "$m" --format txt --out "$tmp/m.txt" >/dev/null 2>&1 &&
"$model" export "$m" --format npy >/dev/null 2>&1
if [ "$(wc -l < "$tmp/m.txt")" -eq 10 ] && [ -f "$tmp/run/model.npy" ] && [ ! -e "$tmp/run/model.npy.tmp" ]; then
	ok "hetsgd-model export: 10 lines of txt, model.npy beside the model"
else
	ko "hetsgd-model export: $(ls "$tmp" "$tmp/run")"
fi
# The npy file as numpy reads it: magic, version 1.0, a dict, float32 values.
if command -v python3 >/dev/null; then
	py=$(python3 - "$tmp/run/model.npy" "$tmp/m.txt" <<'PY'
import ast, struct, sys
b = open(sys.argv[1], 'rb').read()
assert b[:6] == b'\x93NUMPY' and b[6:8] == b'\x01\x00', 'magic'
n = struct.unpack('<H', b[8:10])[0]
assert (10 + n) % 64 == 0, 'alignment'
h = ast.literal_eval(b[10:10 + n].decode('latin1'))
assert h['descr'] == '<f4' and h['shape'] == (10,) and not h['fortran_order'], h
v = struct.unpack('<10f', b[10 + n:])
t = [float(l) for l in open(sys.argv[2])]
assert all(abs(a - c) <= 1e-6 * max(1, abs(c)) for a, c in zip(v, t)), (v, t)
print('ok')
PY
)
	[ "$py" = ok ] && ok "model.npy parses as NumPy 1.0 and holds the txt's values" || ko "model.npy: $py"
fi

# refusals: one sentence, non-zero status
cp "$m" "$tmp/bad.bin"
printf '\x01' | dd of="$tmp/bad.bin" bs=1 seek=80 conv=notrunc 2>/dev/null
out=$("$evalp" "$tmp/bad.bin" --data "$tmp/t.svm" 2>&1); rc=$?
[ $rc -eq 1 ] && [[ $out == *"checksum mismatch"* ]] && ok "a corrupt model: $out" || ko "corrupt model -> $rc: $out"
printf '1 9:1\n' > "$tmp/wide.svm"
out=$("$evalp" "$m" --data "$tmp/wide.svm" 2>&1); rc=$?
[ $rc -eq 1 ] && [[ $out == *"features"* ]] && ok "data of another kind: $out" || ko "wide data -> $rc: $out"
out=$("$model" export "$m" --format csv 2>&1); rc=$?
[ $rc -eq 2 ] && [[ $out == *"use npy or txt"* ]] && ok "an unknown format: $out" || ko "--format csv -> $rc: $out"
"$train" --objective quad --dim 8 --workers 2 --time 1 --no-plots --progress none --out "$tmp/quad" >/dev/null 2>&1
out=$("$evalp" "$tmp/quad/model.bin" 2>&1); rc=$?
[ $rc -eq 1 ] && [[ $out == *"no data"* ]] && ok "a quadratic model: $out" || ko "quad model -> $rc: $out"

# LIBSVM regression: y = 2 x1 - 3 x2 + 0.5 x3 exactly, so least squares has
# the closed-form solution (2, -3, 0.5) and hetsgd-train must reach it.
awk 'BEGIN { srand(5); for (i = 0; i < 2000; i++) { a = 2*rand()-1; b = 2*rand()-1; c = 2*rand()-1;
	printf "%.6f 1:%.6f 2:%.6f 3:%.6f\n", 2*a - 3*b + 0.5*c, a, b, c } }' > "$tmp/reg.svm"
if "$train" --objective lsq --data "$tmp/reg.svm" --workers 2 --time 2 --gamma 0.1 --profile const \
	--time-unit 0 --no-plots --progress none --out "$tmp/reg" > "$tmp/reg.log" 2>&1 &&
	"$model" export "$tmp/reg/model.bin" --format txt --out "$tmp/reg.txt" >/dev/null 2>&1; then
	w=$(tr '\n' ' ' < "$tmp/reg.txt")
	if awk -v w="$w" 'BEGIN { split(w, x, " "); exit !((x[1]-2)^2 + (x[2]+3)^2 + (x[3]-0.5)^2 < 1e-4) }'; then
		ok "LIBSVM regression targets: lsq reached the closed-form solution (2, -3, 0.5): $w"
	else
		ko "LIBSVM regression: weights $w, expected (2, -3, 0.5)"
	fi
else
	ko "LIBSVM regression run: $(tail -n 3 "$tmp/reg.log")"
fi
out=$("$train" --objective softmax --data "$tmp/reg.svm" --check --out "$tmp/x" 2>&1); rc=$?
[ $rc -eq 2 ] && [[ $out == *"not an integer"*"--objective lsq"* ]] &&
	ok "a classifier refuses real-valued labels and names lsq: $out" || ko "softmax on targets -> $rc: $out"

echo "model-tools: $fails failed"
[ $fails -eq 0 ]
