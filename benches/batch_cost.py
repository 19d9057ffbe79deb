# Samples per second of one forward thread (one intra-op thread) by batch size, for the choice of
# the opportunistic batching cap: .venv/bin/python benches/batch_cost.py [FIXTURES_DIR]
import time, torch, sys
torch.set_num_threads(1)
F = sys.argv[1] if len(sys.argv) > 1 else "target/test-fixtures/"
for name, shape in [("resnet18.pt", (3, 224, 224)), ("mlp_bench.pt", (64,))]:
    m = torch.jit.load(F + name).eval()
    row = []
    with torch.no_grad():
        for b in [1, 2, 4, 8, 16, 32]:
            x = torch.randn(b, *shape)
            for _ in range(3): m(x)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 3:
                m(x); n += b
            row.append(f"b{b}={n/(time.perf_counter()-t0):.0f}")
    print(name, " ".join(row), flush=True)
