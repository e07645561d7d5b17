using System.Text.Json;
using System.Text.Json.Nodes;
using Elect.Modeling;
using Elect.Models.Autoencoders;
using Elect.Models.TextEncoders;
using Elect.Models.Transformers;
using Elect.Models.Unets;
using Elect.Schedulers;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>The published-size models are large: these tests run alone, one at a time.</summary>
[CollectionDefinition("PublishedSize", DisableParallelization = true)]
public sealed class PublishedSizeCollection;

/// <summary>
/// Every model component at the width of its published checkpoint (config.json as the Hub repository
/// ships it, depth cut per <c>Data/published-configs/cuts.json</c>), built through the normal config
/// readers, filled with <see cref="SeededInit"/> weights and compared with what diffusers /
/// transformers compute for the same weights and inputs (<c>scripts/goldens/published_sizes.py</c>).
/// Needs only committed data: never skips.
/// </summary>
[Collection("PublishedSize")]
[Trait("Category", "PublishedSize")]
public sealed class PublishedSizeTests(ITestOutputHelper output)
{
    /// <summary>max |diff| allowed, relative to max |expected| of each tensor (float32 on both sides).</summary>
    private const double RelTol = 1e-4;

    internal static string DataDir => Repo.Data();

    internal static string ConfigsDir => Path.Combine(DataDir, "published-configs");

    /// <summary>The published config of <paramref name="name"/> with its depth cut applied, as the readers see it.</summary>
    internal static ModelConfig PublishedConfig(string name, string file = "config.json", bool cut = true)
    {
        var path = Path.Combine(ConfigsDir, name, file);
        var node = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        var cuts = JsonNode.Parse(File.ReadAllText(Path.Combine(ConfigsDir, "cuts.json")))![name]?.AsObject();
        string source = path;
        if (cut && cuts is not null)
        {
            foreach (var kv in cuts) node[kv.Key] = kv.Value?.DeepClone();
            source += $" (cut: {string.Join(", ", cuts.Select(kv => $"{kv.Key}={kv.Value}"))})";
        }
        using var doc = JsonDocument.Parse(node.ToJsonString());
        return new ModelConfig(doc.RootElement, source);
    }

    private sealed class Golden : IDisposable
    {
        private readonly Dictionary<string, Tensor> _tensors;

        public Golden(string name)
        {
            var path = Path.Combine(DataDir, "published-sizes", name + ".safetensors");
            _tensors = SafeTensors.Load(path);
            Metadata = ReadMetadata(path);
        }

        public Dictionary<string, string> Metadata { get; }

        public Tensor this[string key] => _tensors.TryGetValue(key, out var t) ? t : throw new KeyNotFoundException($"golden has no '{key}'");

        private static Dictionary<string, string> ReadMetadata(string path)
        {
            using var f = File.OpenRead(path);
            var len = new byte[8];
            f.ReadExactly(len);
            var header = new byte[BitConverter.ToInt64(len)];
            f.ReadExactly(header);
            using var doc = JsonDocument.Parse(header);
            return doc.RootElement.TryGetProperty("__metadata__", out var m)
                ? m.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!)
                : [];
        }

        public void Dispose()
        {
            foreach (var t in _tensors.Values) t.Dispose();
        }
    }

    /// <summary>Fills the weights as the generator did and checks both sides drew for the same parameters.</summary>
    private void Fill(nn.Module module, Golden golden, Func<string, string>? referenceName = null)
    {
        long seed = long.Parse(golden.Metadata["seed"]);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var (count, sha) = SeededInit.Fill(module, seed, referenceName);
        output.WriteLine($"{count} parameters drawn in {watch.Elapsed.TotalSeconds:F1} s");
        Assert.Equal(golden.Metadata["params_count"], count.ToString());
        Assert.Equal(golden.Metadata["params_sha256"], sha);
    }

    private void Close(Golden golden, string key, Tensor actual, int stride = 1)
    {
        var expected = golden[key];
        using var scope = torch.NewDisposeScope();
        var a = actual.detach().cpu().to(ScalarType.Float64);
        if (stride > 1) a = a.slice(-1, 0, a.shape[^1], stride);
        var e = expected.to(ScalarType.Float64);
        Assert.True(e.shape.SequenceEqual(a.shape), $"{key}: shape [{string.Join(",", a.shape)}], golden [{string.Join(",", e.shape)}]");
        double maxDiff = (e - a).abs().max().item<double>();
        double maxRef = e.abs().max().item<double>();
        output.WriteLine($"{key}: max |diff| = {maxDiff:G3} (max |golden| {maxRef:G3}, relative {maxDiff / maxRef:G3})");
        Assert.False(double.IsNaN(maxDiff), $"{key}: NaN");
        Assert.True(maxDiff <= RelTol * maxRef, $"{key}: max |diff| = {maxDiff:G4} > {RelTol:G2} x max |golden| {maxRef:G4}");
    }

    [Fact]
    public void Ip2pUNetMatchesDiffusers()
    {
        TorchRuntime.Initialize();
        using var golden = new Golden("ip2p-unet");
        using var unet = ModuleSetup.ForInference(new UNet2DConditionModel(PublishedConfig("ip2p-unet")), ScalarType.Float32, torch.CPU);
        Fill(unet, golden);
        using var g = new Generator(ulong.Parse(golden.Metadata["seed"]) + 1);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var sample = torch.randn([2, 8, 8, 16], generator: g);
        var context = torch.randn([2, 77, 768], generator: g);
        Close(golden, "out", unet.forward(sample, golden["timestep"], context));
    }

    [Theory]
    [InlineData("ip2p-vae")]
    [InlineData("sd3-vae")]
    public void VaeMatchesDiffusers(string name)
    {
        TorchRuntime.Initialize();
        using var golden = new Golden(name);
        using var vae = ModuleSetup.ForInference(new AutoencoderKL(PublishedConfig(name)), ScalarType.Float32, torch.CPU);
        Fill(vae, golden);
        using var g = new Generator(ulong.Parse(golden.Metadata["seed"]) + 1);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var image = torch.randn([1, 3, 32, 64], generator: g) * 0.5;
        var (mean, std) = vae.Encode(image);
        Close(golden, "latent_mean", mean);
        Close(golden, "latent_std", std);
        Close(golden, "decoded", vae.Decode(mean));
    }

    [Theory]
    [InlineData("ip2p-text-encoder")]
    [InlineData("sd3-text-encoder-2")]
    public void ClipTextMatchesTransformers(string name)
    {
        TorchRuntime.Initialize();
        using var golden = new Golden(name);
        using var model = ModuleSetup.ForInference(new ClipTextModel(ClipTextConfig.From(PublishedConfig(name))), ScalarType.Float32, torch.CPU);
        // transformers 5's CLIPTextModel names its parameters without the checkpoints' "text_model."
        // prefix (it maps the prefix away on load); CLIPTextModelWithProjection keeps it. Same order either way.
        Fill(model, golden, model.Config.WithProjection ? null : n => n.StartsWith("text_model.", StringComparison.Ordinal) ? n["text_model.".Length..] : n);
        using var _ = torch.no_grad();
        using var result = model.forward(golden["input_ids"]);
        Close(golden, "last_hidden_state", result.LastHiddenState, stride: 16);
        Close(golden, "penultimate_hidden_state", result.PenultimateHiddenState, stride: 16);
        if (model.Config.WithProjection) Close(golden, "text_embeds", result.TextEmbeds!);
        else Close(golden, "pooled_output", result.PooledOutput);
    }

    [Fact]
    public void T5EncoderMatchesTransformers()
    {
        TorchRuntime.Initialize();
        using var golden = new Golden("sd3-text-encoder-3");
        using var model = ModuleSetup.ForInference(new T5EncoderModel(T5Config.From(PublishedConfig("sd3-text-encoder-3"))), ScalarType.Float32, torch.CPU);
        Fill(model, golden);
        using var _ = torch.no_grad();
        using var last = model.forward(golden["input_ids"]);
        Close(golden, "last_hidden_state", last, stride: 32);
    }

    [Fact]
    public void UltraEditTransformerMatchesDiffusers()
    {
        TorchRuntime.Initialize();
        using var golden = new Golden("ultraedit-transformer");
        var cfg = SD3TransformerConfig.From(PublishedConfig("ultraedit-transformer"));
        using var model = ModuleSetup.ForInference(new SD3Transformer2DModel(cfg, persistentPosEmbed: true, torch.CPU, ScalarType.Float32), ScalarType.Float32, torch.CPU);
        Fill(model, golden);
        using var g = new Generator(ulong.Parse(golden.Metadata["seed"]) + 1);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var hidden = torch.randn([2, 32, 16, 24], generator: g);
        var context = torch.randn([2, 154, 4096], generator: g);
        var pooled = torch.randn([2, 2048], generator: g);
        Close(golden, "out", model.forward(hidden, context, pooled, golden["timestep"]));
    }

    [Theory]
    [InlineData("ip2p-scheduler")]
    [InlineData("sd3-scheduler")]
    public void SchedulerMatchesDiffusers(string name)
    {
        TorchRuntime.Initialize();
        using var golden = new Golden(name);
        var config = PublishedConfig(name, "scheduler_config.json");
        foreach (var steps in golden.Metadata["steps"].Split(',').Select(int.Parse))
        {
            double[] timesteps, sigmas;
            double? initNoiseSigma = null;
            if (name == "ip2p-scheduler")
            {
                var s = EulerAncestralDiscreteScheduler.FromConfig(config);
                s.SetTimesteps(steps);
                (timesteps, sigmas, initNoiseSigma) = (s.Timesteps.Select(x => (double)x).ToArray(), s.Sigmas.Select(x => (double)x).ToArray(), s.InitNoiseSigma);
            }
            else
            {
                var s = FlowMatchEulerDiscreteScheduler.FromConfig(config);
                s.SetTimesteps(steps);
                (timesteps, sigmas) = (s.Timesteps, s.Sigmas);
            }
            using var t = torch.tensor(timesteps);
            using var sg = torch.tensor(sigmas);
            Close(golden, $"timesteps_{steps}", t);
            Close(golden, $"sigmas_{steps}", sg);
            if (initNoiseSigma is double sigma)
                Assert.Equal(golden[$"init_noise_sigma_{steps}"].item<double>(), sigma, 5);
        }
    }
}
