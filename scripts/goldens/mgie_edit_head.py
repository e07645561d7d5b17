"""Golden of MGIE's edit head (EditMapper of apple/ml-mgie's mgie_llava.py) at tiny random sizes.

EditMapper is `hid2feat(mapper(llm2hid(llm + emb), query.repeat(B, 1, 1)))` with mapper =
torch.nn.Transformer(batch_first=True, norm_first=True, d_model, nhead=4, num_encoder_layers, num_decoder_layers,
dim_feedforward, dropout=0.0) (relu, eps 1e-5, the final encoder/decoder LayerNorms nn.Transformer adds). The class
below builds exactly that with MGIE's constants made parameters (the published head is 4096 -> 512, 77 queries,
4 + 4 layers, ff 2048, -> 768); every parameter is then drawn at random (not torch's init, whose zero biases and unit
norms would hide mistakes). Inputs: random [IMG] states for a batch of 2, and zeros (MGIE's NULL conditioning).

    ../shared/reference/py scripts/goldens/mgie_edit_head.py tests/Elect.Tests/Data/mgie-edit-head.safetensors
"""

import sys

import torch
from torch import nn
from safetensors.torch import save_file

H, D, Q, FF, ENC, DEC, OUT = 24, 16, 5, 20, 2, 3, 12


class EditMapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.llm2hid = nn.Linear(H, D)
        self.query = nn.Parameter(torch.randn(1, Q, D))
        self.mapper = nn.Transformer(batch_first=True, norm_first=True,
                                     d_model=D, nhead=4, num_encoder_layers=ENC, num_decoder_layers=DEC,
                                     dim_feedforward=FF, dropout=0.0)
        self.hid2feat = nn.Linear(D, OUT)

    def forward(self, llm, emb):
        hid = self.llm2hid(llm + emb)
        hid = self.mapper(hid, self.query.repeat(llm.shape[0], 1, 1))
        return self.hid2feat(hid)


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    head = EditMapper().eval()
    g = torch.Generator().manual_seed(14)
    with torch.no_grad():
        for name, p in sorted(head.named_parameters()):
            t = torch.randn(p.shape, generator=g)
            if p.dim() >= 2:
                t = t / (p.shape[-1] ** 0.5)
            elif name.endswith("bias"):
                t = t * 0.1
            else:
                t = 1 + 0.2 * t
            p.copy_(t)
    emb = torch.randn(1, 8, H, generator=g)
    llm = torch.randn(2, 8, H, generator=g) * 2
    zeros = torch.zeros(1, 8, H)
    with torch.inference_mode():
        t = {"edit_head." + k: v.detach().clone() for k, v in head.state_dict().items()}
        t["emb"] = emb
        t["input.llm"] = llm
        t["output.llm"] = head(llm, emb)
        t["output.null"] = head(zeros, emb)
        t["output.llm1_emb2d"] = head(llm[1:2], emb[0])  # emb given as [8, H]
    print({k: tuple(v.shape) for k, v in t.items() if not k.startswith("edit_head.")}, file=sys.stderr)
    save_file({k: v.contiguous() for k, v in t.items()}, out, metadata={"sizes": f"H={H} D={D} Q={Q} FF={FF} ENC={ENC} DEC={DEC} OUT={OUT} nhead=4"})


if __name__ == "__main__":
    main()
