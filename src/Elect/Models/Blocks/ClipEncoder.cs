using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Elect.Models.Blocks;

/// <summary>The sizes of a CLIP transformer tower (text: causal attention; vision: full attention).</summary>
internal sealed record ClipEncoderShape(int HiddenSize, int NumAttentionHeads, int IntermediateSize, string HiddenAct,
                                        double LayerNormEps, int NumHiddenLayers, bool Causal);

// transformers' CLIPAttention / CLIPMLP / CLIPEncoderLayer / CLIPEncoder, shared by CLIPTextModel and
// CLIPVisionModel (field names are the checkpoint's: self_attn.{q,k,v,out}_proj, mlp.fc1/fc2, layer_norm1/2).

internal sealed class ClipAttention : nn.Module<Tensor, Tensor>
{
    private readonly Linear q_proj, k_proj, v_proj, out_proj;
    private readonly int _heads, _headDim;
    private readonly bool _causal;

    public ClipAttention(ClipEncoderShape cfg, Device device, ScalarType dtype) : base(nameof(ClipAttention))
    {
        int d = cfg.HiddenSize;
        _heads = cfg.NumAttentionHeads;
        _causal = cfg.Causal;
        _headDim = d / _heads;
        q_proj = nn.Linear(d, d, device: device, dtype: dtype);
        k_proj = nn.Linear(d, d, device: device, dtype: dtype);
        v_proj = nn.Linear(d, d, device: device, dtype: dtype);
        out_proj = nn.Linear(d, d, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <summary>Self-attention over [B, L, D]: causal for the text tower, full for the vision tower.</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0], l = x.shape[1];
        Tensor Heads(Linear proj) => proj.forward(x).view(b, l, _heads, _headDim).transpose(1, 2);
        var o = nn.functional.scaled_dot_product_attention(Heads(q_proj), Heads(k_proj), Heads(v_proj), is_casual: _causal);
        o = o.transpose(1, 2).reshape(b, l, _heads * _headDim);
        return out_proj.forward(o).MoveToOuterDisposeScope();
    }
}

internal sealed class ClipMlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear fc1, fc2;
    private readonly string _act;

    public ClipMlp(ClipEncoderShape cfg, Device device, ScalarType dtype) : base(nameof(ClipMlp))
    {
        fc1 = nn.Linear(cfg.HiddenSize, cfg.IntermediateSize, device: device, dtype: dtype);
        fc2 = nn.Linear(cfg.IntermediateSize, cfg.HiddenSize, device: device, dtype: dtype);
        _act = cfg.HiddenAct;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var h = fc1.forward(x);
        using var a = Activations.Apply(_act, h);
        return fc2.forward(a);
    }
}

internal sealed class ClipEncoderLayer : nn.Module<Tensor, Tensor>
{
    private readonly LayerNorm layer_norm1, layer_norm2;
    private readonly ClipAttention self_attn;
    private readonly ClipMlp mlp;

    public ClipEncoderLayer(ClipEncoderShape cfg, Device device, ScalarType dtype) : base(nameof(ClipEncoderLayer))
    {
        layer_norm1 = nn.LayerNorm(cfg.HiddenSize, cfg.LayerNormEps, device: device, dtype: dtype);
        self_attn = new ClipAttention(cfg, device, dtype);
        layer_norm2 = nn.LayerNorm(cfg.HiddenSize, cfg.LayerNormEps, device: device, dtype: dtype);
        mlp = new ClipMlp(cfg, device, dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var h = x + self_attn.forward(layer_norm1.forward(x));
        h = h + mlp.forward(layer_norm2.forward(h));
        return h.MoveToOuterDisposeScope();
    }
}

internal sealed class ClipEncoder : nn.Module
{
    private readonly ModuleList<ClipEncoderLayer> layers;

    public ClipEncoder(ClipEncoderShape cfg, Device device, ScalarType dtype) : base(nameof(ClipEncoder))
    {
        layers = new ModuleList<ClipEncoderLayer>();
        for (int i = 0; i < cfg.NumHiddenLayers; i++) layers.Add(new ClipEncoderLayer(cfg, device, dtype));
        RegisterComponents();
    }

    public ModuleList<ClipEncoderLayer> Layers => layers;
}

