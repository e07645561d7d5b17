using System.Text.Json.Nodes;
using Elect.Modeling;
using Elect.Models.TextEncoders;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Elect.Tests;

public class TextEncoderTests(ITestOutputHelper output)
{
    private const double Atol = 1e-4;

    private void Close(string goldenKey, Tensor actual)
    {
        var expected = Fixtures.Golden(goldenKey);
        using var diff = (expected.to(ScalarType.Float64) - actual.detach().cpu().to(ScalarType.Float64)).abs();
        output.WriteLine($"{goldenKey}: max |diff| = {diff.max().item<double>():G3}");
        TensorAssert.Close(expected, actual, Atol, goldenKey);
    }

    [SkippableFact]
    public void Ip2pClipTextModelMatchesGolden()
    {
        var dir = Path.Combine(Fixtures.Ip2pTiny, "text_encoder");
        using var model = ClipTextModel.FromPretrained(dir, ScalarType.Float32, torch.CPU);
        Assert.False(model.Config.WithProjection);
        Assert.DoesNotContain(model.state_dict().Keys, k => k.StartsWith("text_projection", StringComparison.Ordinal));
        using var _ = torch.no_grad();
        using var result = model.forward(Fixtures.Golden("ip2p.text_encoder.input_ids"));
        Assert.Null(result.TextEmbeds);
        Close("ip2p.text_encoder.last_hidden_state", result.LastHiddenState);
    }

    [SkippableTheory]
    [InlineData("text_encoder")]
    [InlineData("text_encoder_2")]
    public void UltraEditClipWithProjectionMatchesGolden(string component)
    {
        var dir = Path.Combine(Fixtures.UltraEditTiny, component);
        using var model = ClipTextModel.FromPretrained(dir, ScalarType.Float32, torch.CPU);
        Assert.True(model.Config.WithProjection);
        using var _ = torch.no_grad();
        using var result = model.forward(Fixtures.Golden($"ultraedit.{component}.input_ids"));
        Close($"ultraedit.{component}.last_hidden_state", result.LastHiddenState);
        Close($"ultraedit.{component}.penultimate_hidden_state", result.PenultimateHiddenState);
        Assert.NotNull(result.TextEmbeds);
        Close($"ultraedit.{component}.text_embeds", result.TextEmbeds!);
    }

    [SkippableFact]
    public void UltraEditT5EncoderMatchesGolden()
    {
        var dir = Path.Combine(Fixtures.UltraEditTiny, "text_encoder_3");
        using var model = T5EncoderModel.FromPretrained(dir, ScalarType.Float32, torch.CPU);
        using var _ = torch.no_grad();
        var ids = Fixtures.Golden("ultraedit.text_encoder_3.input_ids");
        using var last = model.forward(ids);
        Close("ultraedit.text_encoder_3.last_hidden_state", last);
        // An all-ones attention mask changes nothing.
        using var ones = torch.ones_like(ids);
        using var masked = model.Forward(ids, ones);
        TensorAssert.Close(last, masked, 1e-6, "all-ones mask");
    }

    [SkippableFact]
    public void T5Float16StaysFiniteAndClose()
    {
        var dir = Path.Combine(Fixtures.UltraEditTiny, "text_encoder_3");
        using var model = T5EncoderModel.FromPretrained(dir, ScalarType.Float16, torch.CPU);
        using var _ = torch.no_grad();
        using var last = model.forward(Fixtures.Golden("ultraedit.text_encoder_3.input_ids"));
        Assert.Equal(ScalarType.Float16, last.dtype);
        using var f = last.to(ScalarType.Float32);
        Assert.True(f.isfinite().all().item<bool>());
        using var d = (Fixtures.Golden("ultraedit.text_encoder_3.last_hidden_state") - f).abs();
        output.WriteLine($"fp16 T5 vs fp32 golden: max |diff| = {d.max().item<float>():G3}");
        TensorAssert.Close(Fixtures.Golden("ultraedit.text_encoder_3.last_hidden_state"), f, 2e-2, "fp16 T5");
    }

    [SkippableFact]
    public void T5AcceptsTiedEmbedTokensKey()
    {
        // A checkpoint holding both the tied encoder.embed_tokens.weight and shared.weight, or only the former.
        var src = Path.Combine(Fixtures.UltraEditTiny, "text_encoder_3");
        using var tmp = new TempDir();
        var all = Elect.Modeling.SafeTensors.Load(Path.Combine(src, "model.safetensors"));
        try
        {
            File.Copy(Path.Combine(src, "config.json"), Path.Combine(tmp.Path, "config.json"));
            var ids = Fixtures.Golden("ultraedit.text_encoder_3.input_ids");

            all["encoder.embed_tokens.weight"] = all["shared.weight"].clone();
            Elect.Modeling.SafeTensors.Save(Path.Combine(tmp.Path, "model.safetensors"), all);
            using (var both = T5EncoderModel.FromPretrained(tmp.Path, ScalarType.Float32, torch.CPU))
            using (var last = both.forward(ids))
                TensorAssert.Close(Fixtures.Golden("ultraedit.text_encoder_3.last_hidden_state"), last, Atol, "tied both");

            all.Remove("shared.weight", out var sharedW);
            sharedW!.Dispose();
            Elect.Modeling.SafeTensors.Save(Path.Combine(tmp.Path, "model.safetensors"), all);
            using (var only = T5EncoderModel.FromPretrained(tmp.Path, ScalarType.Float32, torch.CPU))
            using (var last = only.forward(ids))
                TensorAssert.Close(Fixtures.Golden("ultraedit.text_encoder_3.last_hidden_state"), last, Atol, "embed_tokens only");
        }
        finally
        {
            foreach (var t in all.Values) t.Dispose();
        }
    }

    [SkippableFact]
    public void ClipAcceptsPrefixedKeysAndPositionIds()
    {
        // The ip2p fixture stores keys without "text_model."; real checkpoints prefix them and may
        // carry the position_ids buffer.
        var src = Path.Combine(Fixtures.Ip2pTiny, "text_encoder");
        using var tmp = new TempDir();
        var all = Elect.Modeling.SafeTensors.Load(Path.Combine(src, "model.safetensors"));
        var prefixed = all.ToDictionary(kv => kv.Key.StartsWith("text_model.", StringComparison.Ordinal) ? kv.Key : "text_model." + kv.Key, kv => kv.Value);
        try
        {
            prefixed["text_model.embeddings.position_ids"] = torch.arange(77, dtype: ScalarType.Int64).unsqueeze(0);
            File.Copy(Path.Combine(src, "config.json"), Path.Combine(tmp.Path, "config.json"));
            Elect.Modeling.SafeTensors.Save(Path.Combine(tmp.Path, "model.safetensors"), prefixed);
            using var model = ClipTextModel.FromPretrained(tmp.Path, ScalarType.Float32, torch.CPU);
            using var _ = torch.no_grad();
            using var result = model.forward(Fixtures.Golden("ip2p.text_encoder.input_ids"));
            TensorAssert.Close(Fixtures.Golden("ip2p.text_encoder.last_hidden_state"), result.LastHiddenState, Atol, "prefixed");
        }
        finally
        {
            foreach (var t in prefixed.Values) t.Dispose();
        }
    }

    [SkippableFact]
    public void WrongHiddenSizeNamesTensorAndFile()
    {
        var src = Path.Combine(Fixtures.UltraEditTiny, "text_encoder");
        using var tmp = new TempDir();
        foreach (var f in Directory.GetFiles(src)) File.Copy(f, Path.Combine(tmp.Path, Path.GetFileName(f)));
        var cfgPath = Path.Combine(tmp.Path, "config.json");
        var cfg = JsonNode.Parse(File.ReadAllText(cfgPath))!;
        cfg["hidden_size"] = 24;
        File.WriteAllText(cfgPath, cfg.ToJsonString());
        var e = Assert.Throws<InvalidDataException>(() => ClipTextModel.FromPretrained(tmp.Path, ScalarType.Float32, torch.CPU));
        output.WriteLine(e.Message);
        Assert.Contains("model.safetensors", e.Message);
        Assert.Matches(@"tensor 'text_model\.[a-z_.0-9]+'", e.Message);
        Assert.Contains("expects", e.Message);
    }

    [SkippableFact]
    public void WrongT5WidthNamesTensorAndFile()
    {
        var src = Path.Combine(Fixtures.UltraEditTiny, "text_encoder_3");
        using var tmp = new TempDir();
        foreach (var f in Directory.GetFiles(src)) File.Copy(f, Path.Combine(tmp.Path, Path.GetFileName(f)));
        var cfgPath = Path.Combine(tmp.Path, "config.json");
        var cfg = JsonNode.Parse(File.ReadAllText(cfgPath))!;
        cfg["d_model"] = 48;
        File.WriteAllText(cfgPath, cfg.ToJsonString());
        var e = Assert.Throws<InvalidDataException>(() => T5EncoderModel.FromPretrained(tmp.Path, ScalarType.Float32, torch.CPU));
        output.WriteLine(e.Message);
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("tensor '", e.Message);
    }

    [Fact]
    public void ClipPoolsAtFirstEndOfText()
    {
        Elect.Modeling.TorchRuntime.Initialize();
        // Legacy (every row's max is 49407): argmax = first 49407, whatever eos_token_id says.
        using var ids = torch.tensor(new long[,] { { 49406, 5, 49407, 49407 }, { 49406, 49407, 0, 0 } });
        using var legacy = ClipTextModel.EosPositions(ids, 2);
        Assert.Equal(new long[] { 2, 1 }, legacy.to(ScalarType.Int64).data<long>().ToArray());
        // An added token above 49407: the first eos_token_id position.
        using var added = torch.tensor(new long[,] { { 49406, 49408, 49407, 49407 }, { 49406, 49407, 0, 0 } });
        using var pos = ClipTextModel.EosPositions(added, 49407);
        Assert.Equal(new long[] { 2, 1 }, pos.to(ScalarType.Int64).data<long>().ToArray());
    }

    [Fact]
    public void T5RelativeBucketsMatchReference()
    {
        Elect.Modeling.TorchRuntime.Initialize();
        // Values of transformers' _relative_position_bucket(bidirectional, 32 buckets, max distance 128).
        using var rel = torch.tensor(new long[] { -200, -128, -20, -8, -7, -1, 0, 1, 7, 8, 20, 128, 200 });
        using var b = T5EncoderModel.RelativePositionBucket(rel, 32, 128);
        Assert.Equal(new long[] { 15, 15, 10, 8, 7, 1, 0, 17, 23, 24, 26, 31, 31 }, b.data<long>().ToArray());
    }

    private sealed class TempDir : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("elect-text-").FullName;
        public void Dispose()
        {
            try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
        }
    }
}
