using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Elect.Selection;
using Elect.Imaging;
using Elect.Modeling;
using Elect.Models.Autoencoders;
using Elect.Models.Transformers;
using Elect.Models.Unets;
using Elect.Pipelines;
using Elect.Pipelines.InstructDiffusion;
using Elect.Pipelines.InstructPix2Pix;
using Elect.Pipelines.Mgie;
using Elect.Pipelines.UltraEdit;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Runner;

/// <summary>Settings of a benchmark run.</summary>
public sealed record BenchOptions
{
    public string Family { get; init; } = "instructpix2pix";

    /// <summary>A real checkpoint folder; null builds full-size models with random weights.</summary>
    public string? ModelPath { get; init; }

    public Device Device { get; init; } = CPU;
    public ScalarType DType { get; init; } = ScalarType.Float32;
    public int Resolution { get; init; } = 512;
    public int Steps { get; init; } = 100;
    public int Candidates { get; init; } = 10;
    public int StoppingStep { get; init; } = 40;
    public int FirstMaskStep { get; init; }
    public int LastMaskStep { get; init; } = 20;
    public int Runs { get; init; } = 3;
    public int Warmup { get; init; } = 1;
    public int? MaxBatch { get; init; }
    public IReadOnlyList<string> Modes { get; init; } = Bench.DefaultModes;

    /// <summary>Architecture scale for random weights: 1 = full size; smaller values shrink channel widths (CPU smoke runs).</summary>
    public string Size { get; init; } = "full";

    /// <summary>
    /// mgie with random weights: how many of LLaMA-7B's 32 decoder layers to build (null: all; e.g. 2 on a CPU machine
    /// without 26 GB for float32 weights); 0 builds no LLM (the [IMG] states are random and only the editing half runs).
    /// </summary>
    public int? LlmLayers { get; init; }
}

/// <summary>
/// Times plain single-seed editing, ELECT (N, T, t_stop) and full Best-of-N on the same weights,
/// warm-up excluded, median of several runs, with model evaluations, device memory and the device
/// name. Text encoding is excluded (random prompt embeddings of the real shapes); VAE encoding of
/// the input, every model call, the BIS decodes and the final decode are included.
/// </summary>
public static class Bench
{
    /// <summary>
    /// plain: one seed, T steps. elect: N candidates batched to t_stop, winner finished. best-of-n: all N
    /// to T, scored at the end. elect-sequential: ELECT with one candidate per model call (batch 3, the
    /// authors' schedule), to show what batching buys on the same weights.
    /// </summary>
    public static readonly IReadOnlyList<string> AllModes = ["plain", "elect", "best-of-n", "elect-sequential"];

    /// <summary>The modes run when none are named.</summary>
    public static readonly IReadOnlyList<string> DefaultModes = ["plain", "elect", "best-of-n"];

    /// <summary>
    /// Runs the benchmark. <paramref name="onModeDone"/> receives the document after each mode (<c>complete: false</c>
    /// until the last), so a caller can write every figure as soon as it exists: a crash or a time limit
    /// loses only the mode in progress.
    /// </summary>
    public static BenchReport Run(BenchOptions o, ILogger? logger = null, Action<BenchReport>? onModeDone = null)
    {
        var log = logger ?? NullLogger.Instance;
        foreach (var m in o.Modes)
            if (!AllModes.Contains(m)) throw new ArgumentException($"unknown bench mode '{m}' ({string.Join(", ", AllModes)})");
        if (o.Runs < 1) throw new ArgumentOutOfRangeException(nameof(o.Runs), "--runs must be at least 1");
        if (o.Warmup < 0) throw new ArgumentOutOfRangeException(nameof(o.Warmup), "--warmup must be >= 0");
        if (o.Candidates < 1) throw new ArgumentOutOfRangeException(nameof(o.Candidates), "--candidates must be at least 1");
        if (o.Resolution % 64 != 0 || o.Resolution < 64) throw new ArgumentOutOfRangeException(nameof(o.Resolution), "--resolution must be a positive multiple of 64");
        TorchRuntime.Initialize(o.Device);
        var selection = new SelectionOptions { StoppingStep = o.StoppingStep, FirstMaskStep = o.FirstMaskStep, LastMaskStep = o.LastMaskStep };
        selection.Validate(o.Steps);

        var build = Stopwatch.StartNew();
        if (o.ModelPath is not null)
        {
            var family = ModelFamilies.Get(o.Family);
            WeightMemory.Check(family, family.Request(o.ModelPath, null, o.Device, o.DType, log));
        }
        using var model = o.ModelPath is null ? RandomModel(o) : Editor.Load(o.ModelPath, o.Family, o.Device, o.DType, log).Model;
        log.LogInformation("bench model {Family} ({Source}) ready in {Seconds:F1} s", o.Family, o.ModelPath ?? "random weights", build.Elapsed.TotalSeconds);
        var image = SampleImage.Create(o.Resolution, o.Resolution);
        var engine = new ElectEngine(model, log);
        var edit = new EditOptions { InferenceSteps = o.Steps, MaxBatch = o.MaxBatch };
        var seeds = Enumerable.Range(1, o.Candidates).Select(i => (long)i).ToArray();

        var modes = new Dictionary<string, BenchModeResult>();
        var document = new BenchReport
        {
            Device = DeviceName(o.Device),
            Dtype = o.DType.ToString(),
            Family = o.Family,
            Weights = o.ModelPath ?? $"random ({o.Size}{(o.Family == MgieModel.FamilyName && o.LlmLayers is { } n ? n == 0 ? "; no LLM: random [IMG] states" : $"; LLaMA decoder layers: {n} of {(o.Size == "tiny" ? 2 : 32)}" : "")})",
            DenoiserParameters = DenoiserParameters(model),
            Resolution = o.Resolution,
            Steps = o.Steps,
            Candidates = o.Candidates,
            StoppingStep = o.StoppingStep,
            MaxBatch = o.MaxBatch,
            DateUtc = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm", System.Globalization.CultureInfo.InvariantCulture),
            Excluded = model is MgieModel { Instructor: not null } ? "nothing (the multimodal LLM's generation is in the prepare phase)" : "text encoding",
            Complete = false,
        };
        // each document handed out holds the modes done so far (its own copy)
        BenchReport Document(bool complete) => document with { Modes = new Dictionary<string, BenchModeResult>(modes), Complete = complete };
        foreach (var mode in o.Modes)
        {
            var (modeSeeds, modeSelection) = mode switch
            {
                "plain" => (new long[] { 1 }, (SelectionOptions?)null),
                "elect" or "elect-sequential" => (seeds, selection),
                _ => (seeds, selection with { StoppingStep = o.Steps, KeepAllSeeds = true }),
            };
            var times = new List<double>();
            PhaseSeconds? phases = null;
            long nfe = 0;
            var memory = new List<MemorySnapshot>();
            for (int r = 0; r < o.Warmup + o.Runs; r++)
            {
                var sw = Stopwatch.StartNew();
                using var condition = Prepare(model, image, o);
                if (o.Device.type == DeviceType.CUDA) cuda.synchronize(o.Device);   // the prepare phase ends when its kernels have run
                var prepare = sw.Elapsed;
                var modeEdit = mode == "elect-sequential" ? edit with { MaxBatch = 1 } : edit;
                using var result = engine.Run(condition, modeSeeds, modeEdit, modeSelection, null, CancellationToken.None, prepare);
                double seconds = sw.Elapsed.TotalSeconds;
                memory.Add(MemoryProbe.Snapshot(o.Device));
                if (r < o.Warmup)
                {
                    log.LogInformation("{Mode}: warm-up {Seconds:F3} s", mode, seconds);
                    continue;
                }
                times.Add(seconds);
                nfe = result.ModelEvaluations;
                phases = PhaseSeconds.From(result.Times, withTotal: false);
                log.LogInformation("{Mode}: run {Run} {Seconds:F3} s, {Nfe} model evaluations", mode, r - o.Warmup + 1, seconds, nfe);
            }
            var sorted = times.Order().ToArray();
            double median = sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
            modes[mode] = new BenchModeResult
            {
                Candidates = modeSeeds.Length,
                StoppingStep = modeSelection?.StoppingStep,
                MedianS = Math.Round(median, 4),
                RunsS = times.Select(t => Math.Round(t, 4)).ToArray(),
                Nfe = nfe,
                LastRunPhasesS = phases,
                Memory = MemoryProbe.Trend(memory),   // after every run, warm-ups included: max is the peak, growth shows leaks
            };
            if (mode != o.Modes[^1]) onModeDone?.Invoke(Document(complete: false));
        }
        var final = Document(complete: true);
        onModeDone?.Invoke(final);
        return final;
    }

    private static EditCondition Prepare(EditingModel model, RgbImage image, BenchOptions o)
    {
        int tokens = RandomFamily(o.Family).PromptTokens;
        using var gen = new Generator(1234);
        switch (model)
        {
            case MgieModel mgie when mgie.Instructor is null:
            {
                using var states = randn([8, mgie.EditHead.Config.LlmHidden], generator: gen);
                return mgie.PrepareWithStates(image, states);
            }
            case MgieModel mgie:
                return mgie.Prepare(image, "turn it into a watercolour painting");   // the multimodal LLM runs: part of MGIE's prepare phase
            case InstructPix2PixModel ip2p when ip2p.TextEncoder is null:
            {
                using var text = randn([1, tokens, ip2p.Unet.CrossAttentionDim], generator: gen);
                using var empty = randn([1, tokens, ip2p.Unet.CrossAttentionDim], generator: gen);
                return ip2p.PrepareWithEmbeddings(image, text, empty);
            }
            case InstructDiffusionModel id when id.TextEncoder is null:
            {
                using var text = randn([1, tokens, id.Unet.CrossAttentionDim], generator: gen);
                using var empty = randn([1, tokens, id.Unet.CrossAttentionDim], generator: gen);
                return id.PrepareWithEmbeddings(image, text, empty);
            }
            case UltraEditModel ue when ue.TextEncoder is null:
            {
                using var embeds = randn([2, tokens, ue.Transformer.Config.JointAttentionDim], generator: gen);
                using var pool = randn([2, ue.Transformer.Config.PooledProjectionDim], generator: gen);
                return ue.PrepareWithEmbeddings(image, embeds, pool);
            }
            default:
                return model.Prepare(image, "turn it into a watercolour painting");
        }
    }

    /// <summary>
    /// How the bench builds each registered family with random weights (full size, or shrunk for CPU smoke runs)
    /// and how long its prompt embeddings are: the bench's one family-specific table (a test checks that every
    /// family of the registry has an entry).
    /// </summary>
    private static readonly IReadOnlyDictionary<string, (Func<BenchOptions, EditingModel> Build, int PromptTokens)> RandomFamilies =
        new Dictionary<string, (Func<BenchOptions, EditingModel>, int)>
        {
            ["instructpix2pix"] = (RandomInstructPix2Pix, 77),
            ["magicbrush"] = (RandomInstructPix2Pix, 77),
            ["ultraedit"] = (RandomUltraEdit, 154),
            ["instructdiffusion"] = (RandomInstructDiffusion, 77),
            ["mgie"] = (RandomMgie, 77),
            ["demo"] = (o => Pipelines.Demo.DemoModel.Load(o.Device, o.DType), 77),   // tiny whatever --size says: the demo family itself
        };

    /// <summary>The families the bench can build with random weights.</summary>
    public static IEnumerable<string> RandomFamilyNames => RandomFamilies.Keys;

    private static (Func<BenchOptions, EditingModel> Build, int PromptTokens) RandomFamily(string family) =>
        RandomFamilies.TryGetValue(family, out var f) ? f : throw new ArgumentException($"the bench has no random-weight build of '{family}'");

    private static EditingModel RandomModel(BenchOptions o)
    {
        if (o.Size is not ("full" or "tiny")) throw new ArgumentException($"unknown --size '{o.Size}' (full or tiny)");
        return RandomFamily(o.Family).Build(o);
    }

    /// <summary>
    /// Seeded, scaled random weights (<see cref="SeededInit"/>) instead of the layers' default initialisation (every
    /// real weight comes from a file, so nothing else sets them): with the defaults the random pipelines reached
    /// NaN/Inf within a few steps, which also times non-finite and denormal arithmetic instead of the real work.
    /// </summary>
    private static T Seeded<T>(T module, long seed) where T : nn.Module
    {
        SeededInit.Fill(module, seed);
        return module;
    }

    private static ModelConfig Cfg(string json, string name, string size)
    {
        var node = JsonNode.Parse(json)!.AsObject();
        if (size == "tiny") Shrink(node);
        using var doc = JsonDocument.Parse(node.ToJsonString());
        return new ModelConfig(doc.RootElement, $"built-in {name} config");
    }

    private static EditingModel RandomUltraEdit(BenchOptions o)
    {
        var transformer = ModuleSetup.ForInference(Seeded(new SD3Transformer2DModel(SD3TransformerConfig.From(Cfg(BenchConfigs.UltraEditTransformer, "SD3 transformer", o.Size)), persistentPosEmbed: false, device: o.Device, dtype: o.DType), 1), o.DType, o.Device);
        var vae = ModuleSetup.ForInference(Seeded(new AutoencoderKL(Cfg(BenchConfigs.Sd3Vae, "SD3 VAE", o.Size)), 2), o.DType, o.Device);
        return UltraEditModel.FromComponents(null, null, null, null, null, null, transformer, vae, Cfg(BenchConfigs.FlowScheduler, "scheduler", "full"), o.Device, o.DType);
    }

    private static (UNet2DConditionModel Unet, AutoencoderKL Vae) RandomSd15(BenchOptions o) =>
        (ModuleSetup.ForInference(Seeded(new UNet2DConditionModel(Cfg(BenchConfigs.Ip2pUnet, "SD 1.5 UNet", o.Size)), 1), o.DType, o.Device),
         ModuleSetup.ForInference(Seeded(new AutoencoderKL(Cfg(BenchConfigs.Sd15Vae, "SD 1.5 VAE", o.Size)), 2), o.DType, o.Device));

    private static EditingModel RandomInstructPix2Pix(BenchOptions o)
    {
        var (unet, vae) = RandomSd15(o);
        return InstructPix2PixModel.FromComponents(o.Family, null, null, unet, vae, Cfg(BenchConfigs.Ip2pScheduler, "scheduler", "full"), o.Device, o.DType);
    }

    // instruct_diffusion.yaml's UNet and VAE are SD 1.5's with 8 input channels, as InstructPix2Pix's
    private static EditingModel RandomInstructDiffusion(BenchOptions o)
    {
        var (unet, vae) = RandomSd15(o);
        return InstructDiffusionModel.FromComponents(LdmConfig.InstructDiffusion, null, null, unet, vae, o.Device, o.DType);
    }

    /// <summary>
    /// MGIE: the SD 1.5 InstructPix2Pix UNet and VAE with MGIE's edit head (4096 -> 512, 4 + 4 layers, -> 768) and
    /// <c>emb</c>, seeded random weights; the [IMG] states are random (no multimodal LLM in this build).
    /// </summary>
    private static EditingModel RandomMgie(BenchOptions o)
    {
        if (o.LlmLayers is < 0) throw new ArgumentOutOfRangeException(nameof(o.LlmLayers), "--llm-layers must be >= 0");
        var (unet, vae) = RandomSd15(o);
        var config = o.Size == "tiny" ? new EditMapperConfig(64, 32, 77, 64, 2, 2, unet.CrossAttentionDim) : EditMapperConfig.Mgie7B;
        var head = ModuleSetup.ForInference(Seeded(new EditMapper(config), 3), o.DType, o.Device);
        using var gen = new Generator(4);
        using var emb32 = randn([1, 8, config.LlmHidden], generator: gen);
        var emb = emb32.to(o.DType, o.Device);
        var llm = o.LlmLayers == 0 ? null : RandomMgieInstructor.Build(o.Device, o.DType, o.LlmLayers, o.Size == "tiny");
        return MgieModel.FromComponents(llm, head, emb, unet, vae, Cfg(BenchConfigs.Ip2pScheduler, "scheduler", "full"), o.Device, o.DType);
    }

    /// <summary>Divides channel widths by 8-10 (keeping group-norm divisibility) for quick CPU runs of the code path.</summary>
    private static void Shrink(JsonObject c)
    {
        if (c["block_out_channels"] is JsonArray b)
            c["block_out_channels"] = new JsonArray(b.Select(x => (JsonNode)JsonValue.Create(Math.Max(32, x!.GetValue<int>() / 10 / 32 * 32))!).ToArray());
        if (c.ContainsKey("cross_attention_dim")) c["cross_attention_dim"] = 64;
        if (c.ContainsKey("num_layers")) c["num_layers"] = 2;
        if (c.ContainsKey("num_attention_heads") && c["num_attention_heads"] is JsonValue) c["num_attention_heads"] = 4;
        if (c.ContainsKey("attention_head_dim") && c.ContainsKey("joint_attention_dim")) c["attention_head_dim"] = 16;
        if (c.ContainsKey("caption_projection_dim")) c["caption_projection_dim"] = 64;
    }

    /// <summary>Parameter count of the UNet / transformer: shows which architecture size was timed.</summary>
    private static long DenoiserParameters(EditingModel model)
    {
        nn.Module? denoiser = model switch
        {
            InstructPix2PixModel ip2p => ip2p.Unet,
            InstructDiffusionModel id => id.Unet,
            UltraEditModel ue => ue.Transformer,
            _ => null,
        };
        return denoiser?.parameters().Sum(p => p.numel()) ?? 0;
    }

    private static string DeviceName(Device d)
    {
        if (d.type != DeviceType.CUDA) return $"cpu ({Environment.ProcessorCount} threads)";
        return MemoryProbe.GpuName(d.index < 0 ? 0 : d.index) ?? "cuda";
    }
}
