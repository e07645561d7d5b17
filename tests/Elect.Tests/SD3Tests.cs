using Elect.Modeling;
using Elect.Models.Transformers;
using Elect.Schedulers;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Elect.Tests;

public class SD3Tests
{
    private readonly ITestOutputHelper _out;

    public SD3Tests(ITestOutputHelper output)
    {
        _out = output;
        // Load the shared golden tensors here, outside any dispose scope: loaded lazily inside a
        // test's torch.NewDisposeScope() they would belong to it and be disposed with it.
        if (Fixtures.Root is not null) Fixtures.HasGolden("ultraedit.transformer.out");
    }

    private static string TransformerDir => Path.Combine(Fixtures.UltraEditTiny, "transformer");

    private static readonly Lazy<SD3Transformer2DModel> Model =
        new(() => SD3Transformer2DModel.FromPretrained(TransformerDir, ScalarType.Float32, torch.CPU));

    private double MaxDiff(Tensor a, Tensor b, string what)
    {
        using var d = (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max();
        double v = d.item<double>();
        _out.WriteLine($"{what}: max |diff| = {v:G4}");
        return v;
    }

    [SkippableFact]
    public void SD3TransformerMatchesGolden()
    {
        Fixtures.Require();
        var model = Model.Value;
        using var _ = torch.no_grad();
        using var outp = model.forward(Fixtures.Golden("ultraedit.transformer.hidden_states"),
                                       Fixtures.Golden("ultraedit.transformer.encoder_hidden_states"),
                                       Fixtures.Golden("ultraedit.transformer.pooled_projections"),
                                       Fixtures.Golden("ultraedit.transformer.timestep"));
        var golden = Fixtures.Golden("ultraedit.transformer.out");
        MaxDiff(golden, outp, "transformer out");
        TensorAssert.Close(golden, outp, 1e-4, "ultraedit.transformer.out");
    }

    [SkippableTheory]
    [InlineData(ScalarType.BFloat16, 0.15)]
    [InlineData(ScalarType.Float16, 0.02)]
    public void SD3TransformerRunsInHalfPrecision(ScalarType dtype, double atol)
    {
        Fixtures.Require();
        using var model = SD3Transformer2DModel.FromPretrained(TransformerDir, dtype, torch.CPU);
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var outp = model.forward(Fixtures.Golden("ultraedit.transformer.hidden_states").to(dtype),
                                 Fixtures.Golden("ultraedit.transformer.encoder_hidden_states").to(dtype),
                                 Fixtures.Golden("ultraedit.transformer.pooled_projections").to(dtype),
                                 Fixtures.Golden("ultraedit.transformer.timestep")); // float32 timesteps, as the pipeline passes them
        Assert.Equal(dtype, outp.dtype);
        var golden = Fixtures.Golden("ultraedit.transformer.out");
        _out.WriteLine($"golden max |value| = {golden.abs().max().item<float>():G4}");
        MaxDiff(golden, outp, $"{dtype} out");
        TensorAssert.Close(golden, outp, atol, $"{dtype} transformer out");
    }

    [SkippableFact]
    public void SD3TransformerIsBatchIndependent()
    {
        Fixtures.Require();
        var model = Model.Value;
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var x = Fixtures.Golden("ultraedit.transformer.hidden_states");
        var c = Fixtures.Golden("ultraedit.transformer.encoder_hidden_states");
        var p = Fixtures.Golden("ultraedit.transformer.pooled_projections");
        var t = Fixtures.Golden("ultraedit.transformer.timestep");
        var full = model.forward(x, c, p, t);
        var single = model.forward(x[1..2], c[1..2], p[1..2], t[1..2]);
        MaxDiff(full[1..2], single, "row 1 batch-3 vs batch-1");
        TensorAssert.Close(full[1..2], single, 1e-5, "row 1 of the batch");
        // a scalar timestep broadcasts over the batch
        var scalarT = model.forward(x[1..2], c[1..2], p[1..2], t[1]);
        TensorAssert.Close(single, scalarT, 0, "scalar timestep");
    }

    [SkippableFact]
    public void SD3TransformerRunsOnNonSquareLatents()
    {
        Fixtures.Require();
        var model = Model.Value;
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var gen = new torch.Generator(5);
        var x = torch.randn([2, 32, 16, 24], generator: gen);
        var c = torch.randn([2, 154, 64], generator: gen);
        var p = torch.randn([2, 48], generator: gen);
        var t = torch.tensor(new float[] { 900f, 250.5f });
        var y = model.forward(x, c, p, t);
        Assert.Equal(new long[] { 2, 16, 16, 24 }, y.shape);
        Assert.False(torch.isnan(y).any().item<bool>());
        // the patch grid is 8x12: rows 12..19, columns 10..21 of the 32x32 stored grid
        var pe = Model.Value.PositionalEmbeddingFor(16, 24);
        Assert.Equal(new long[] { 1, 8 * 12, 32 }, pe.shape);
        var stored = SafeTensors.Load(Path.Combine(TransformerDir, "diffusion_pytorch_model.safetensors"), k => k == "pos_embed.pos_embed")["pos_embed.pos_embed"];
        var expected = stored.to(ScalarType.Float32).reshape(32, 32, 32)[12..20, 10..22].reshape(1, -1, 32);
        TensorAssert.Close(expected, pe, 0, "cropped positional embedding");
        // a taller latent crops the other way and runs too
        var y2 = model.forward(torch.randn([1, 32, 20, 8], generator: gen), c[..1], p[..1], t[..1]);
        Assert.Equal(new long[] { 1, 16, 20, 8 }, y2.shape);
    }

    [SkippableFact]
    public void SD3StoredPositionGridIsTheSinCosGrid()
    {
        var root = Fixtures.Require();
        using var scope = torch.NewDisposeScope();
        var stored = SafeTensors.Load(Path.Combine(TransformerDir, "diffusion_pytorch_model.safetensors"), k => k == "pos_embed.pos_embed")["pos_embed.pos_embed"];
        // sample_size 16 / patch 2 = base size 8, 32x32 grid, width 32; stored in float16
        var computed = SD3PatchEmbed.SinCos2D(32, 32, 32, 8).unsqueeze(0);
        MaxDiff(stored, computed, "computed vs stored pos grid");
        TensorAssert.Close(stored.to(ScalarType.Float32), computed, 1e-3, "sin-cos grid");
        Assert.NotNull(root);
    }

    [SkippableFact]
    public void SD3WrongJointAttentionDimFailsNamingTensorAndFile()
    {
        Fixtures.Require();
        var tmp = Directory.CreateTempSubdirectory("elect-sd3-");
        try
        {
            var weights = Path.Combine(tmp.FullName, "diffusion_pytorch_model.safetensors");
            File.Copy(Path.Combine(TransformerDir, "diffusion_pytorch_model.safetensors"), weights);
            var json = File.ReadAllText(Path.Combine(TransformerDir, "config.json"));
            Assert.Contains("\"joint_attention_dim\": 64", json);
            File.WriteAllText(Path.Combine(tmp.FullName, "config.json"), json.Replace("\"joint_attention_dim\": 64", "\"joint_attention_dim\": 80"));
            var e = Assert.Throws<InvalidDataException>(() => SD3Transformer2DModel.FromPretrained(tmp.FullName, ScalarType.Float32, torch.CPU));
            _out.WriteLine(e.Message);
            Assert.Contains("context_embedder.weight", e.Message);
            Assert.Contains(weights, e.Message);
        }
        finally
        {
            tmp.Delete(recursive: true);
        }
    }

    [SkippableFact]
    public void SD3UnsupportedConfigsAreRejected()
    {
        Fixtures.Require();
        var json = File.ReadAllText(Path.Combine(TransformerDir, "config.json"));
        var tmp = Directory.CreateTempSubdirectory("elect-sd3-");
        try
        {
            var cfgPath = Path.Combine(tmp.FullName, "config.json");
            File.WriteAllText(cfgPath, json.Replace("\"qk_norm\": null", "\"qk_norm\": \"l2\""));
            var e = Assert.Throws<NotSupportedException>(() => SD3TransformerConfig.Load(cfgPath));
            Assert.Contains("qk_norm", e.Message);
            File.WriteAllText(cfgPath, json.Replace("\"dual_attention_layers\": []", "\"dual_attention_layers\": [5]"));
            var e2 = Assert.Throws<InvalidDataException>(() => SD3TransformerConfig.Load(cfgPath));
            Assert.Contains("dual_attention_layers", e2.Message);

            var sched = File.ReadAllText(Path.Combine(Fixtures.UltraEditTiny, "scheduler", "scheduler_config.json"));
            var schedPath = Path.Combine(tmp.FullName, "scheduler_config.json");
            File.WriteAllText(schedPath, sched.Replace("\"use_dynamic_shifting\": false", "\"use_dynamic_shifting\": true"));
            var e3 = Assert.Throws<NotSupportedException>(() => FlowMatchEulerDiscreteScheduler.FromConfig(schedPath));
            Assert.Contains("use_dynamic_shifting", e3.Message);
        }
        finally
        {
            tmp.Delete(recursive: true);
        }
    }

    [SkippableFact]
    public void SD3DualAttentionAndQkNormBuildDiffusersKeys()
    {
        TorchRuntime.Initialize();
        var cfg = new SD3TransformerConfig(SampleSize: 8, PatchSize: 2, InChannels: 4, OutChannels: 4, NumLayers: 2,
            AttentionHeadDim: 4, NumAttentionHeads: 2, JointAttentionDim: 12, CaptionProjectionDim: 8, PooledProjectionDim: 6,
            PosEmbedMaxSize: 8, QkNorm: "rms_norm", DualAttentionLayers: [0]);
        using var m = new SD3Transformer2DModel(cfg);
        var keys = m.state_dict().Keys.ToHashSet();
        foreach (var k in new[] { "pos_embed.pos_embed", "pos_embed.proj.weight", "time_text_embed.timestep_embedder.linear_1.weight",
                                  "time_text_embed.text_embedder.linear_2.bias", "context_embedder.weight",
                                  "transformer_blocks.0.norm1.linear.weight", "transformer_blocks.0.attn.norm_added_k.weight",
                                  "transformer_blocks.0.attn2.to_q.weight", "transformer_blocks.0.attn2.norm_q.weight",
                                  "transformer_blocks.0.attn.to_add_out.weight", "transformer_blocks.0.ff_context.net.2.weight",
                                  "transformer_blocks.1.norm1_context.linear.weight", "norm_out.linear.weight", "proj_out.weight" })
            Assert.Contains(k, keys);
        Assert.DoesNotContain("transformer_blocks.1.attn.to_add_out.weight", keys);
        Assert.DoesNotContain("transformer_blocks.1.ff_context.net.0.proj.weight", keys);
        Assert.DoesNotContain("transformer_blocks.1.attn2.to_q.weight", keys);
        Assert.Equal(9 * 8, m.state_dict()["transformer_blocks.0.norm1.linear.weight"].shape[0]);
        using var _ = torch.no_grad();
        using var y = m.forward(torch.randn(2, 4, 6, 4), torch.randn(2, 5, 12), torch.randn(2, 6), torch.tensor(new float[] { 10, 500 }));
        Assert.Equal(new long[] { 2, 4, 6, 4 }, y.shape);
    }

    private static double[] GoldenDoubles(string key) => Fixtures.Golden(key).to(ScalarType.Float64).data<double>().ToArray();

    [SkippableTheory]
    [InlineData(20)]
    [InlineData(100)]
    public void SD3FlowMatchSchedulerTablesMatchGolden(int steps)
    {
        var s = FlowMatchEulerDiscreteScheduler.FromConfig(Path.Combine(Fixtures.UltraEditTiny, "scheduler"));
        s.SetTimesteps(steps);
        var ts = GoldenDoubles($"ultraedit.scheduler.timesteps_{steps}");
        var sg = GoldenDoubles($"ultraedit.scheduler.sigmas_{steps}");
        Assert.Equal(ts.Length, s.Timesteps.Length);
        Assert.Equal(sg.Length, s.Sigmas.Length);
        double dt = ts.Zip(s.Timesteps, (a, b) => Math.Abs(a - b)).Max();
        double ds = sg.Zip(s.Sigmas, (a, b) => Math.Abs(a - b)).Max();
        _out.WriteLine($"{steps} steps: timesteps max |diff| = {dt:G4}, sigmas max |diff| = {ds:G4}");
        Assert.True(dt <= 1e-6, $"timesteps differ by {dt}");
        Assert.True(ds <= 1e-6, $"sigmas differ by {ds}");
        Assert.Equal(0.0, s.Sigmas[^1]);
        Assert.Equal(s.Sigmas[3], s.Sigma(3));
    }

    [Fact]
    public void SD3FlowMatchStepIsEuler()
    {
        TorchRuntime.Initialize();
        var s = new FlowMatchEulerDiscreteScheduler(1000, 3.0);
        s.SetTimesteps(10);
        using var scope = torch.NewDisposeScope();
        var x = torch.randn(2, 3, 4, 4);
        var v = torch.randn(2, 3, 4, 4);
        var y = s.Step(v, 2, x);
        var expected = x + v * (float)(s.Sigma(3) - s.Sigma(2));
        TensorAssert.Close(expected, y, 1e-6, "euler step");
        var yHalf = s.Step(v.to(ScalarType.Float16), 2, x);
        Assert.Equal(ScalarType.Float16, yHalf.dtype);
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Step(v, 10, x));
    }
}
