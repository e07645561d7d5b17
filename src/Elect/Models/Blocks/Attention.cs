using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Elect.Models.Blocks;

/// <summary>
/// diffusers <c>Attention</c> with the default <c>AttnProcessor2_0</c> (scaled dot-product attention):
/// weights <c>to_q</c>, <c>to_k</c>, <c>to_v</c>, <c>to_out.0</c> and an optional <c>group_norm</c>.
/// Accepts token input [B, N, C] or spatial input [B, C, H, W] (flattened to H*W tokens and
/// reshaped back, as the VAE's mid-block attention is used). <c>upcast_attention</c> /
/// <c>upcast_softmax</c> have no effect with this processor in diffusers either.
/// </summary>
public sealed class Attention : nn.Module<Tensor, Tensor?, Tensor>
{
    private readonly GroupNorm? group_norm;
    private readonly Linear to_q;
    private readonly Linear to_k;
    private readonly Linear to_v;
    private readonly ModuleList<nn.Module<Tensor, Tensor>> to_out;

    private readonly bool _residual;
    private readonly double _rescale;

    /// <param name="queryDim">channels of the query input (and of the output).</param>
    /// <param name="heads">number of heads.</param>
    /// <param name="dimHead">channels per head.</param>
    /// <param name="crossAttentionDim">channels of the key/value context (null: self-attention).</param>
    /// <param name="bias">bias on to_q/to_k/to_v.</param>
    /// <param name="outBias">bias on to_out.0.</param>
    /// <param name="normNumGroups">group norm on the input before the projections (null: none).</param>
    /// <param name="eps">epsilon of that group norm.</param>
    /// <param name="residualConnection">add the (un-normalised) input to the output.</param>
    /// <param name="rescaleOutputFactor">divide the output by this (after the residual).</param>
    public Attention(int queryDim, int heads, int dimHead, int? crossAttentionDim = null, bool bias = false,
                     bool outBias = true, int? normNumGroups = null, double eps = 1e-5,
                     bool residualConnection = false, double rescaleOutputFactor = 1.0)
        : base(nameof(Attention))
    {
        if (heads <= 0 || dimHead <= 0) throw new ArgumentException($"attention needs heads > 0 and head size > 0 (got {heads} x {dimHead})");
        Heads = heads;
        DimHead = dimHead;
        int inner = heads * dimHead;
        int ctx = crossAttentionDim ?? queryDim;
        if (normNumGroups is int g) group_norm = nn.GroupNorm(g, queryDim, eps, affine: true);
        to_q = nn.Linear(queryDim, inner, hasBias: bias);
        to_k = nn.Linear(ctx, inner, hasBias: bias);
        to_v = nn.Linear(ctx, inner, hasBias: bias);
        to_out = nn.ModuleList<nn.Module<Tensor, Tensor>>(nn.Linear(inner, queryDim, hasBias: outBias));
        _residual = residualConnection;
        _rescale = rescaleOutputFactor;
        RegisterComponents();
    }

    public int Heads { get; }
    public int DimHead { get; }

    /// <summary>Self-attention.</summary>
    public Tensor forward(Tensor hidden) => forward(hidden, null);

    public override Tensor forward(Tensor hidden, Tensor? context)
    {
        using var scope = torch.NewDisposeScope();
        bool spatial = hidden.dim() == 4;
        long b = hidden.shape[0], c = 0, h = 0, w = 0;
        Tensor x = hidden;
        if (spatial)
        {
            c = hidden.shape[1]; h = hidden.shape[2]; w = hidden.shape[3];
            if (group_norm is not null) x = group_norm.forward(x);
            x = x.reshape(b, c, h * w).transpose(1, 2);
        }
        else if (group_norm is not null)
        {
            x = group_norm.forward(x.transpose(1, 2)).transpose(1, 2);
        }
        var ctx = context ?? x;
        var q = SplitHeads(to_q.forward(x), b);
        var k = SplitHeads(to_k.forward(ctx), b);
        var v = SplitHeads(to_v.forward(ctx), b);
        var o = nn.functional.scaled_dot_product_attention(q, k, v);
        o = o.transpose(1, 2).reshape(b, -1, Heads * DimHead);
        o = to_out[0].forward(o);
        if (spatial) o = o.transpose(1, 2).reshape(b, c, h, w);
        if (_residual) o = o + hidden;
        if (_rescale != 1.0) o = o / _rescale;
        return o.MoveToOuterDisposeScope();
    }

    private Tensor SplitHeads(Tensor t, long b) => t.view(b, -1, Heads, DimHead).transpose(1, 2);
}
