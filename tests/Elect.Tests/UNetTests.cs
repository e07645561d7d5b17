using Elect.Modeling;
using Elect.Models.Unets;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Elect.Tests;

// No dispose scopes around golden access: Fixtures loads the shared goldens lazily, and a scope
// active at that moment would dispose them.
public class UNetTests(ITestOutputHelper output)
{
    private static string UNetDir => Path.Combine(Fixtures.Ip2pTiny, "unet");

    [SkippableFact]
    public void ForwardMatchesGolden()
    {
        using var unet = UNet2DConditionModel.FromPretrained(UNetDir, ScalarType.Float32, torch.CPU);
        var sample = Fixtures.Golden("ip2p.unet.sample");
        var timestep = Fixtures.Golden("ip2p.unet.timestep");
        var context = Fixtures.Golden("ip2p.unet.encoder_hidden_states");
        Assert.Equal(new long[] { 1 }, timestep.shape);
        Assert.Equal(3, sample.shape[0]);
        using var result = unet.forward(sample, timestep, context);
        var expected = Fixtures.Golden("ip2p.unet.out");
        using (var d = (expected - result).abs().max())
            output.WriteLine($"ip2p.unet.out: max |diff| = {d.item<float>():G4}");
        TensorAssert.Close(expected, result, 1e-4, "ip2p.unet.out");

        // A scalar timestep and a [B] timestep give the same result.
        using var scalarT = timestep.reshape([]);
        using var r2 = unet.forward(sample, scalarT, context);
        TensorAssert.Close(result, r2, 0, "scalar timestep");
        using var batchT = timestep.expand(3).contiguous();
        using var r3 = unet.forward(sample, batchT, context);
        TensorAssert.Close(result, r3, 0, "[B] timestep");
    }

    [SkippableFact]
    public void BatchIndependent()
    {
        using var unet = UNet2DConditionModel.FromPretrained(UNetDir, ScalarType.Float32, torch.CPU);
        var sample = Fixtures.Golden("ip2p.unet.sample");
        var timestep = Fixtures.Golden("ip2p.unet.timestep");
        var context = Fixtures.Golden("ip2p.unet.encoder_hidden_states");
        using var batch = unet.forward(sample, timestep, context);
        using var s0 = sample[..1];
        using var c0 = context[..1];
        using var single = unet.forward(s0, timestep, c0);
        using var row0 = batch[..1];
        using (var d = (row0 - single).abs().max())
            output.WriteLine($"batch-3 row 0 vs batch-1: max |diff| = {d.item<float>():G4}");
        TensorAssert.Close(single, row0, 1e-5, "row 0 of batch 3 vs batch 1");

        // Per-row timesteps: row 2 of a batch with different timesteps equals its own forward.
        using var ts = torch.tensor(new float[] { 999.5f, 10.25f, 500f });
        using var mixed = unet.forward(sample, ts, context);
        using var s2 = sample[2..3];
        using var c2 = context[2..3];
        using var t2 = ts[2..3];
        using var single2 = unet.forward(s2, t2, c2);
        using var row2 = mixed[2..3];
        TensorAssert.Close(single2, row2, 1e-5, "row 2 with per-row timesteps");
    }

    [SkippableFact]
    public void OddLatentSizeUsesSkipSizes()
    {
        using var unet = UNet2DConditionModel.FromPretrained(UNetDir, ScalarType.Float32, torch.CPU);
        using var sample = torch.randn(1, 8, 13, 22, generator: new Generator(5));
        using var context = torch.randn(1, 7, 32, generator: new Generator(6));
        using var t = torch.tensor(300f);
        using var result = unet.forward(sample, t, context);
        Assert.Equal(new long[] { 1, 4, 13, 22 }, result.shape);
        Assert.False(result.isnan().any().item<bool>());
    }

    [SkippableFact]
    public void StateDictKeysAreDiffusers()
    {
        using var unet = UNet2DConditionModel.FromPretrained(UNetDir, ScalarType.Float32, torch.CPU);
        var keys = unet.state_dict().Keys.ToHashSet();
        Assert.Contains("time_embedding.linear_1.weight", keys);
        Assert.Contains("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.weight", keys);
        Assert.Contains("down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight", keys);
        Assert.Contains("down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.weight", keys);
        Assert.Contains("down_blocks.0.downsamplers.0.conv.weight", keys);
        Assert.Contains("mid_block.attentions.0.proj_in.weight", keys);
        Assert.Contains("up_blocks.1.resnets.2.conv_shortcut.weight", keys);
        Assert.Contains("up_blocks.0.upsamplers.0.conv.weight", keys);
        Assert.Equal(684, keys.Count);
    }

    [SkippableFact]
    public void MissingTensorIsNamedWithFile()
    {
        const string dropped = "up_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k.weight";
        using var copy = new ComponentCopy(UNetDir, "diffusion_pytorch_model.safetensors", tensors =>
        {
            Assert.True(tensors.ContainsKey(dropped));
            return tensors.Where(kv => kv.Key != dropped).ToDictionary();
        });
        var e = Assert.ThrowsAny<InvalidDataException>(() => UNet2DConditionModel.FromPretrained(copy.Path, ScalarType.Float32, torch.CPU));
        output.WriteLine(e.Message);
        Assert.Contains(dropped, e.Message);
        Assert.Contains("diffusion_pytorch_model.safetensors", e.Message);
    }

    [SkippableTheory]
    [InlineData("\"class_embed_type\": null", "\"class_embed_type\": \"timestep\"", "class_embed_type")]
    [InlineData("\"addition_embed_type\": null", "\"addition_embed_type\": \"text_time\"", "addition_embed_type")]
    [InlineData("\"resnet_time_scale_shift\": \"default\"", "\"resnet_time_scale_shift\": \"scale_shift\"", "resnet_time_scale_shift")]
    [InlineData("\"only_cross_attention\": false", "\"only_cross_attention\": true", "only_cross_attention")]
    [InlineData("\"DownBlock2D\"", "\"SimpleCrossAttnDownBlock2D\"", "down_block_types")]
    public void UnsupportedConfigIsRejectedNamingTheKey(string from, string to, string key)
    {
        var json = File.ReadAllText(Path.Combine(UNetDir, "config.json"));
        Assert.Contains(from, json);
        var path = Path.Combine(Path.GetTempPath(), $"elect-unet-config-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json.Replace(from, to));
        try
        {
            var e = Assert.ThrowsAny<Exception>(() => new UNet2DConditionModel(ModelConfig.Load(path)));
            Assert.Contains($"'{key}'", e.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }
}

public class UNetReducedPrecisionTests(ITestOutputHelper output)
{
    [SkippableTheory]
    [InlineData(ScalarType.BFloat16, 0.1)]
    [InlineData(ScalarType.Float16, 0.02)]
    public void RunsInReducedPrecision(ScalarType dtype, double atol)
    {
        var dir = Path.Combine(Fixtures.Ip2pTiny, "unet");
        var sample = Fixtures.Golden("ip2p.unet.sample");
        var timestep = Fixtures.Golden("ip2p.unet.timestep");
        var context = Fixtures.Golden("ip2p.unet.encoder_hidden_states");
        var expected = Fixtures.Golden("ip2p.unet.out");
        using var unet = UNet2DConditionModel.FromPretrained(dir, dtype, torch.CPU);
        using var result = unet.forward(sample, timestep, context);
        Assert.Equal(dtype, result.dtype);
        using (var d = (expected - result.to(ScalarType.Float32)).abs().max())
            output.WriteLine($"{dtype}: max |diff| vs float32 golden = {d.item<float>():G4}");
        TensorAssert.Close(expected, result, atol, $"ip2p.unet.out in {dtype}");
    }
}
