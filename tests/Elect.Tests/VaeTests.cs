using Elect.Models.Autoencoders;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Elect.Tests;

public class VaeTests(ITestOutputHelper output)
{
    [SkippableTheory]
    [InlineData("ip2p", "ip2p-tiny", 4, 0.18215, null, true)]
    [InlineData("ultraedit", "ultraedit-tiny", 16, 1.5305, 0.0609, false)]
    public void EncodeDecodeMatchGoldens(string family, string model, int latentChannels, double scaling, double? shift, bool quantConvs)
    {
        // No dispose scope here: Fixtures loads the shared goldens lazily, and a scope active at that
        // moment would dispose them.
        var dir = Path.Combine(Fixtures.Model(model), "vae");
        using var vae = AutoencoderKL.FromPretrained(dir, ScalarType.Float32, torch.CPU);
        Assert.Equal(latentChannels, vae.LatentChannels);
        Assert.Equal(scaling, vae.ScalingFactor, 12);
        Assert.Equal(shift, vae.ShiftFactor);
        Assert.Equal(8, vae.DownsampleFactor);
        Assert.Equal(quantConvs, vae.state_dict().ContainsKey("quant_conv.weight"));
        Assert.Equal(quantConvs, vae.state_dict().ContainsKey("post_quant_conv.weight"));

        var (mean, std) = vae.Encode(Fixtures.Golden($"{family}.vae.image"));
        using var m = mean;
        using var sd = std;
        Report($"{family} mean", Fixtures.Golden($"{family}.vae.latent_mean"), mean);
        Report($"{family} std", Fixtures.Golden($"{family}.vae.latent_std"), std);
        TensorAssert.Close(Fixtures.Golden($"{family}.vae.latent_mean"), mean, 1e-4, $"{family}.vae.latent_mean");
        TensorAssert.Close(Fixtures.Golden($"{family}.vae.latent_std"), std, 1e-4, $"{family}.vae.latent_std");

        // decoded = decode(golden latent_mean), no scaling.
        using var decoded = vae.Decode(Fixtures.Golden($"{family}.vae.latent_mean"));
        Report($"{family} decoded", Fixtures.Golden($"{family}.vae.decoded"), decoded);
        TensorAssert.Close(Fixtures.Golden($"{family}.vae.decoded"), decoded, 1e-4, $"{family}.vae.decoded");
    }

    [SkippableFact]
    public void StateDictKeysAreDiffusers()
    {
        var dir = Path.Combine(Fixtures.Ip2pTiny, "vae");
        using var vae = AutoencoderKL.FromPretrained(dir, ScalarType.Float32, torch.CPU);
        var keys = vae.state_dict().Keys.ToHashSet();
        Assert.Contains("encoder.down_blocks.0.resnets.0.norm1.weight", keys);
        Assert.Contains("encoder.down_blocks.0.downsamplers.0.conv.weight", keys);
        Assert.Contains("encoder.mid_block.attentions.0.to_q.weight", keys);
        Assert.Contains("encoder.mid_block.attentions.0.group_norm.weight", keys);
        Assert.Contains("decoder.mid_block.attentions.0.to_out.0.bias", keys);
        Assert.Contains("decoder.up_blocks.0.upsamplers.0.conv.weight", keys);
        Assert.Contains("quant_conv.weight", keys);
        Assert.All(vae.parameters(), p => Assert.False(p.requires_grad));
    }

    [SkippableFact]
    public void MissingTensorIsNamedWithFile()
    {
        var src = Path.Combine(Fixtures.Ip2pTiny, "vae");
        const string dropped = "decoder.mid_block.attentions.0.to_k.bias";
        using var copy = new ComponentCopy(src, "diffusion_pytorch_model.safetensors", tensors =>
        {
            Assert.True(tensors.ContainsKey(dropped));
            return tensors.Where(kv => kv.Key != dropped).ToDictionary();
        });
        var e = Assert.ThrowsAny<InvalidDataException>(() => AutoencoderKL.FromPretrained(copy.Path, ScalarType.Float32, torch.CPU));
        Assert.Contains(dropped, e.Message);
        Assert.Contains("diffusion_pytorch_model.safetensors", e.Message);
    }

    [SkippableFact]
    public void ShapeMismatchIsNamedWithFile()
    {
        var src = Path.Combine(Fixtures.Ip2pTiny, "vae");
        var tmp = Directory.CreateTempSubdirectory("elect-vae-");
        try
        {
            // 8 latent channels instead of 4: the encoder's conv_out (and more) no longer fit.
            var json = File.ReadAllText(Path.Combine(src, "config.json")).Replace("\"latent_channels\": 4", "\"latent_channels\": 8");
            File.WriteAllText(Path.Combine(tmp.FullName, "config.json"), json);
            File.Copy(Path.Combine(src, "diffusion_pytorch_model.safetensors"), Path.Combine(tmp.FullName, "diffusion_pytorch_model.safetensors"));
            var e = Assert.ThrowsAny<InvalidDataException>(() => AutoencoderKL.FromPretrained(tmp.FullName, ScalarType.Float32, torch.CPU));
            Assert.Contains("diffusion_pytorch_model.safetensors", e.Message);
            Assert.Matches("tensor '(encoder.conv_out|decoder.conv_in|quant_conv|post_quant_conv)\\.", e.Message);
        }
        finally
        {
            tmp.Delete(recursive: true);
        }
    }

    private void Report(string what, Tensor expected, Tensor actual)
    {
        using var d = (expected.to(ScalarType.Float64) - actual.detach().to(ScalarType.Float64)).abs().max();
        output.WriteLine($"{what}: max |diff| = {d.item<double>():G4}");
    }
}

public sealed class VaeLegacyKeyTests
{
    [Theory]
    [InlineData("encoder.mid_block.attentions.0.query.weight", "encoder.mid_block.attentions.0.to_q.weight")]
    [InlineData("decoder.mid_block.attentions.0.key.bias", "decoder.mid_block.attentions.0.to_k.bias")]
    [InlineData("decoder.mid_block.attentions.0.value.weight", "decoder.mid_block.attentions.0.to_v.weight")]
    [InlineData("encoder.mid_block.attentions.0.proj_attn.weight", "encoder.mid_block.attentions.0.to_out.0.weight")]
    [InlineData("encoder.mid_block.attentions.0.group_norm.weight", "encoder.mid_block.attentions.0.group_norm.weight")]
    [InlineData("encoder.down_blocks.0.resnets.0.conv1.weight", "encoder.down_blocks.0.resnets.0.conv1.weight")]
    public void RenamesPre014AttentionKeys(string legacy, string current) =>
        Assert.Equal(current, AutoencoderKL.LegacyAttentionKey(legacy));

    [SkippableFact]
    public void LoadsACheckpointWithLegacyAttentionNames()
    {
        var src = Path.Combine(Fixtures.Ip2pTiny, "vae");
        using var copy = new ComponentCopy(src, "diffusion_pytorch_model.safetensors", tensors =>
        {
            var legacy = tensors.ToDictionary(kv => kv.Key.Replace(".to_q.", ".query.").Replace(".to_k.", ".key.").Replace(".to_v.", ".value.").Replace(".to_out.0.", ".proj_attn."), kv => kv.Value);
            Assert.Contains("encoder.mid_block.attentions.0.query.weight", legacy.Keys);
            return legacy;
        });
        using var vae = AutoencoderKL.FromPretrained(copy.Path, TorchSharp.torch.ScalarType.Float32, TorchSharp.torch.CPU);
        using var decoded = vae.Decode(Fixtures.Golden("ip2p.vae.latent_mean"));
        TensorAssert.Close(Fixtures.Golden("ip2p.vae.decoded"), decoded, 1e-4, "decoded with legacy keys");
    }
}
