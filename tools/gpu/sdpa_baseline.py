"""FlashAttention-2 baseline through PyTorch SDPA at the Figure-4 shape.

B=2, H=48 heads of dim 64, causal, bf16: forward and forward+backward, median ms
(triton.testing.do_bench).  Run on the GPU machine in the same call as cuda_bench.
"""
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from triton.testing import do_bench


def main():
    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
          f"cuda {torch.version.cuda}")
    Ts = [int(a) for a in sys.argv[1:]] or [2048, 8192, 16384, 32768]
    for T in Ts:
        shape = (2, 48, T, 64)
        q = torch.randn(shape, device=dev, dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(shape, device=dev, dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(shape, device=dev, dtype=torch.bfloat16, requires_grad=True)
        do = torch.randn(shape, device=dev, dtype=torch.bfloat16)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            def fwd():
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)

            def fwd_bwd():
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                o.backward(do)

            with torch.no_grad():
                t_f = do_bench(fwd, warmup=25, rep=200, return_mode="median")
            t_fb = do_bench(fwd_bwd, warmup=25, rep=200, return_mode="median",
                            grad_to_none=[q, k, v])
        print(f"T={T:6d} FA2 (SDPA flash) fwd {t_f:8.3f} ms  fwd+bwd {t_fb:8.3f} ms")
        print(f"csv,sdpa,bf16,fwd,{T},{t_f:.5f}")
        print(f"csv,sdpa,bf16,fwdbwd,{T},{t_fb:.5f}")
        sys.stdout.flush()
        del q, k, v, do
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
