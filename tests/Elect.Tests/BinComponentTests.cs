using Elect.Modeling;
using Elect.Models.TextEncoders;
using Elect.Models.Transformers;
using Xunit;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>
/// UltraEdit's transformer and T5 folders with PyTorch .bin weights (files written by torch.save in the
/// reference environment: scripts/goldens/make_bin_components.py) load exactly like their safetensors twins.
/// Both loaders look at the stored tensor names before loading (SD3's position grid, T5's tied embedding).
/// </summary>
public sealed class BinComponentTests
{
    public BinComponentTests() => TorchRuntime.Initialize();

    private static string Dir(string component, string format) => Repo.Data("bin-components", component, format);

    private static void SameWeights(Dictionary<string, Tensor> a, Dictionary<string, Tensor> b)
    {
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (k, v) in a) Assert.True(PickleData.Same(v, b[k]), $"weight {k} differs between .bin and .safetensors");
    }

    [Fact]
    public void Sd3TransformerLoadsFromBin()
    {
        using var _ = NewDisposeScope();
        Assert.EndsWith(".bin", WeightLoader.FindWeightFiles(Dir("transformer", "torch-bin")).Single());
        using var st = SD3Transformer2DModel.FromPretrained(Dir("transformer", "safetensors"), ScalarType.Float32, CPU);
        using var bin = SD3Transformer2DModel.FromPretrained(Dir("transformer", "torch-bin"), ScalarType.Float32, CPU);
        SameWeights(st.state_dict(), bin.state_dict());
        using var g = new Generator(3);
        var x = randn([1, 8, 8, 8], generator: g);
        var ctx = randn([1, 5, 16], generator: g);
        var pooled = randn([1, 8], generator: g);
        var t = tensor(new float[] { 500f });
        Assert.True(PickleData.Same(st.call(x, ctx, pooled, t), bin.call(x, ctx, pooled, t)));
    }

    [Fact]
    public void T5EncoderLoadsFromBinWithTiedEmbeddings()
    {
        using var _ = NewDisposeScope();
        var files = WeightLoader.FindWeightFiles(Dir("text_encoder_3", "torch-bin"));
        Assert.Equal("pytorch_model.bin", Path.GetFileName(files.Single()));
        Assert.Contains("encoder.embed_tokens.weight", WeightLoader.TensorNames(files));
        using var st = T5EncoderModel.FromPretrained(Dir("text_encoder_3", "safetensors"), ScalarType.Float32, CPU);
        using var bin = T5EncoderModel.FromPretrained(Dir("text_encoder_3", "torch-bin"), ScalarType.Float32, CPU);
        SameWeights(st.state_dict(), bin.state_dict());
        var ids = tensor(new long[] { 5, 17, 33, 1, 0, 0 }).unsqueeze(0);
        Assert.True(PickleData.Same(st.call(ids), bin.call(ids)));
    }
}
