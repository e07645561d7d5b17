using System.Diagnostics;
using Elect.Modeling;
using Elect.Pipelines.InstructDiffusion;
using Elect.Pipelines.InstructPix2Pix;
using Elect.Pipelines.UltraEdit;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace Elect.Pipelines;

/// <summary>What a family's checkpoint path names.</summary>
public enum CheckpointLayout
{
    /// <summary>A diffusers pipeline folder (model_index.json + one folder per component).</summary>
    Folder,

    /// <summary>One single-file checkpoint (.ckpt / .safetensors), with the tokenizer in a separate folder.</summary>
    SingleFile,

    /// <summary>No checkpoint: the model is built in memory (the <c>demo</c> family).</summary>
    BuiltIn,

    /// <summary>A folder of several published parts in the family's own layout (<c>mgie</c>: see <see cref="Mgie.MgiePaths"/>).</summary>
    Bundle,
}

/// <summary>What a family's loader gets: the checkpoint path, the tokenizer folder (single-file families) and where to run.</summary>
public sealed record FamilyLoadRequest(string CheckpointPath, string? TokenizerPath, Device Device, ScalarType DType, ILogger Log);

/// <summary>
/// One editing-model family as the CLI and <see cref="Editor"/> know it: its name, defaults, checkpoint
/// convention and loader. Every family is registered once, in <see cref="ModelFamilies"/>.
/// </summary>
public sealed record ModelFamily
{
    /// <summary>The family's name (the CLI's <c>--model</c> value).</summary>
    public required string Name { get; init; }

    /// <summary>The reference's default text guidance of the family.</summary>
    public required float DefaultTextGuidance { get; init; }

    public required CheckpointLayout Checkpoint { get; init; }

    /// <summary>The default checkpoint path (relative to the working directory).</summary>
    public required string DefaultCheckpoint { get; init; }

    /// <summary>Whether the family can take a mask image (for UltraEdit: when the checkpoint's transformer has mask channels).</summary>
    public required bool TakesMask { get; init; }

    /// <summary>The default tokenizer folder of a <see cref="CheckpointLayout.SingleFile"/> family; null for folder families.</summary>
    public string? DefaultTokenizerPath { get; init; }

    /// <summary>Loads the family's model; errors name the missing or inconsistent file.</summary>
    public required Func<FamilyLoadRequest, EditingModel> Load { get; init; }

    /// <summary>A load request for this family: the tokenizer folder defaults to <see cref="DefaultTokenizerPath"/>.</summary>
    public FamilyLoadRequest Request(string checkpointPath, string? tokenizerPath, Device device, ScalarType dtype, ILogger log) =>
        new(checkpointPath, tokenizerPath ?? DefaultTokenizerPath, device, dtype, log);

    /// <summary>
    /// The weight files <see cref="Load"/> reads for a request and which of their tensors it keeps, for
    /// <see cref="WeightBytes"/>; null for a family without checkpoint files (the demo).
    /// </summary>
    public Func<FamilyLoadRequest, IReadOnlyList<WeightSource>>? WeightSources { get; init; }

    /// <summary>
    /// The memory the request's weights take once loaded at its dtype (<see cref="WeightFootprint"/>), from the files'
    /// headers; null when the family has no files or they cannot be listed (<see cref="Load"/> then says why).
    /// </summary>
    public long? WeightBytes(FamilyLoadRequest request)
    {
        if (WeightSources is null) return null;
        try
        {
            var sources = WeightSources(request);
            return sources.Count == 0 ? null : WeightFootprint.Bytes(sources, request.DType);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or NotSupportedException or ArgumentException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// The default checkpoint; for a single-file family its <c>.safetensors</c> conversion beside it when that
    /// file exists.
    /// </summary>
    public string DefaultCheckpointPath()
    {
        if (Checkpoint != CheckpointLayout.SingleFile) return DefaultCheckpoint;
        var converted = Path.ChangeExtension(DefaultCheckpoint, ".safetensors");
        return File.Exists(converted) ? converted : DefaultCheckpoint;
    }
}

/// <summary>The registry of editing-model families: adding a family touches this list only.</summary>
public static class ModelFamilies
{
    /// <summary>Where the instructdiffusion family looks for the CLIP tokenizer and text-encoder config by default.</summary>
    public const string DefaultClipFolder = "checkpoints/clip-vit-large-patch14";

    public static IReadOnlyList<ModelFamily> All { get; } =
    [
        new()
        {
            Name = "instructpix2pix", DefaultTextGuidance = 7.5f, Checkpoint = CheckpointLayout.Folder,
            DefaultCheckpoint = Path.Combine("checkpoints", "instructpix2pix"), TakesMask = false,
            Load = r => DiffusersFolder(r, "instructpix2pix", "unet", "an InstructPix2Pix-style", () => InstructPix2PixModel.Load(r.CheckpointPath, "instructpix2pix", r.Device, r.DType)),
            WeightSources = r => Components(r.CheckpointPath, "unet", "vae", "text_encoder"),
        },
        new()
        {
            Name = "magicbrush", DefaultTextGuidance = 7.5f, Checkpoint = CheckpointLayout.Folder,
            DefaultCheckpoint = Path.Combine("checkpoints", "magicbrush"), TakesMask = false,
            Load = r => DiffusersFolder(r, "magicbrush", "unet", "an InstructPix2Pix-style", () => InstructPix2PixModel.Load(r.CheckpointPath, "magicbrush", r.Device, r.DType)),
            WeightSources = r => Components(r.CheckpointPath, "unet", "vae", "text_encoder"),
        },
        new()
        {
            Name = "ultraedit", DefaultTextGuidance = 7.0f, Checkpoint = CheckpointLayout.Folder,
            DefaultCheckpoint = Path.Combine("checkpoints", "ultraedit"), TakesMask = true,
            Load = r => DiffusersFolder(r, "ultraedit", "transformer", "an SD3-style (UltraEdit)", () => UltraEditModel.Load(r.CheckpointPath, r.Device, r.DType)),
            WeightSources = r => Components(r.CheckpointPath, "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"),
        },
        new()
        {
            Name = "instructdiffusion", DefaultTextGuidance = 7.5f, Checkpoint = CheckpointLayout.SingleFile,
            DefaultCheckpoint = "checkpoints/v1-5-pruned-emaonly-adaption-task.ckpt", TakesMask = false,
            DefaultTokenizerPath = DefaultClipFolder,
            Load = LoadInstructDiffusion,
            WeightSources = r => [new WeightSource(r.CheckpointPath, InstructDiffusionModel.IsLoadedKey, LdmCheckpoint.StateDictKey)],
        },
        new()
        {
            Name = Mgie.MgieModel.FamilyName, DefaultTextGuidance = 7.5f, Checkpoint = CheckpointLayout.Bundle,
            DefaultCheckpoint = Path.Combine("checkpoints", "mgie"), TakesMask = false,
            Load = LoadMgie,
            WeightSources = r => Mgie.MgiePaths.Resolve(r.CheckpointPath).WeightSources(),
        },
        new()
        {
            Name = "demo", DefaultTextGuidance = 7.5f, Checkpoint = CheckpointLayout.BuiltIn,
            DefaultCheckpoint = DemoCheckpoint, TakesMask = false,
            Load = LoadDemo,
        },
    ];

    /// <summary>The checkpoint "path" of the demo family (it has none).</summary>
    public const string DemoCheckpoint = "(built-in demo)";

    /// <summary>The registered names, in registration order.</summary>
    public static IReadOnlyList<string> Names { get; } = All.Select(f => f.Name).ToArray();

    /// <summary>The family called <paramref name="name"/> (trimmed, any case), or null.</summary>
    public static ModelFamily? Find(string name)
    {
        var key = name.Trim().ToLowerInvariant();
        return All.FirstOrDefault(f => f.Name == key);
    }

    /// <summary>The family called <paramref name="name"/>; an unknown name throws naming the registered ones.</summary>
    public static ModelFamily Get(string name) => Find(name)
        ?? throw new ArgumentException($"unknown model '{name.Trim().ToLowerInvariant()}' (expected one of: {string.Join(", ", Names)})");

    /// <summary>The names as prose: "a, b, c or d".</summary>
    public static string NamesInProse() => Names.Count == 1 ? Names[0] : $"{string.Join(", ", Names.Take(Names.Count - 1))} or {Names[^1]}";

    /// <summary>The weight files of the <paramref name="components"/> of a diffusers folder that it has.</summary>
    private static IReadOnlyList<WeightSource> Components(string folder, params string[] components) =>
        components.Select(c => Path.Combine(folder, c)).Where(Directory.Exists)
                  .SelectMany(WeightLoader.FindWeightFiles).Select(f => new WeightSource(f)).ToArray();

    /// <summary>A diffusers pipeline folder holding <paramref name="component"/>, loaded by <paramref name="load"/>.</summary>
    private static EditingModel DiffusersFolder(FamilyLoadRequest r, string family, string component, string style, Func<EditingModel> load)
    {
        var folder = r.CheckpointPath;
        if (r.TokenizerPath is not null)
            throw new ArgumentException($"Editor.Load(tokenizerPath) is only for the instructdiffusion family; {family} checkpoints carry their own tokenizer", "tokenizerPath");
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException($"checkpoint folder not found: {folder} (place a diffusers-format checkpoint there or pass its path as Editor.Load(folder))");
        var indexPath = Path.Combine(folder, "model_index.json");
        if (!File.Exists(indexPath))
            throw new FileNotFoundException($"{folder} is not a diffusers checkpoint folder: missing model_index.json", indexPath);
        var index = ModelConfig.Load(indexPath);
        var className = index.String("_class_name", "");
        if (!index.Has(component))
            throw new InvalidDataException($"{indexPath}: '{className}' has no {component} component; the {family} family needs {style} checkpoint");
        TorchRuntime.Initialize(r.Device);
        var sw = Stopwatch.StartNew();
        var model = load();
        r.Log.LogInformation("loaded {Family} from {Folder} on {Device} ({DType}) in {Seconds:F1} s", family, folder, r.Device, r.DType, sw.Elapsed.TotalSeconds);
        return model;
    }

    private static EditingModel LoadDemo(FamilyLoadRequest r)
    {
        if (r.CheckpointPath != DemoCheckpoint)
            throw new ArgumentException($"the demo model is built in and takes no checkpoint path ({r.CheckpointPath}); for a checkpoint folder use the instructpix2pix family");
        if (r.TokenizerPath is not null)
            throw new ArgumentException("Editor.Load(tokenizerPath) is only for the instructdiffusion family; the demo model has its own tokenizer", "tokenizerPath");
        TorchRuntime.Initialize(r.Device);
        var sw = Stopwatch.StartNew();
        var model = Demo.DemoModel.Load(r.Device, r.DType);
        r.Log.LogWarning("{Warning}", Demo.DemoModel.Warning);
        r.Log.LogInformation("built the demo model on {Device} ({DType}) in {Seconds:F1} s", r.Device, r.DType, sw.Elapsed.TotalSeconds);
        return model;
    }

    /// <summary>
    /// Builds MGIE's multimodal LLM (LLaVA-7B with MGIE's token embeddings) for the mgie family: LLaVA folder, vision-tower
    /// folder, the tensors of <c>mllm.pt</c> other than the edit head's.
    /// </summary>
    public static Mgie.InstructorFactory MgieInstructor { get; } = Mgie.LlavaInstructor.Load;

    private static EditingModel LoadMgie(FamilyLoadRequest r)
    {
        if (r.TokenizerPath is not null)
            throw new ArgumentException("Editor.Load(tokenizerPath) is only for the instructdiffusion family; MGIE's LLaVA folder carries its own tokenizer", "tokenizerPath");
        TorchRuntime.Initialize(r.Device);
        var sw = Stopwatch.StartNew();
        var model = Mgie.MgieModel.Load(r.CheckpointPath, r.Device, r.DType, MgieInstructor);
        r.Log.LogInformation("loaded mgie from {Folder} on {Device} ({DType}) in {Seconds:F1} s", r.CheckpointPath, r.Device, r.DType, sw.Elapsed.TotalSeconds);
        return model;
    }

    private static EditingModel LoadInstructDiffusion(FamilyLoadRequest r)
    {
        var checkpoint = r.CheckpointPath;
        var tokenizerPath = r.TokenizerPath ?? throw new ArgumentException("instructdiffusion needs a tokenizer folder", nameof(r));
        if (Directory.Exists(checkpoint))
            throw new ArgumentException($"{checkpoint} is a folder; the instructdiffusion family takes the single-file checkpoint (e.g. checkpoints/v1-5-pruned-emaonly-adaption-task.ckpt)");
        if (!Directory.Exists(tokenizerPath))
            throw new DirectoryNotFoundException($"CLIP tokenizer folder not found: {tokenizerPath} (openai/clip-vit-large-patch14's tokenizer files and config.json; pass its path as Editor.Load(tokenizerPath))");
        TorchRuntime.Initialize(r.Device);
        var sw = Stopwatch.StartNew();
        var config = InstructDiffusionModel.DefaultConfigPath(checkpoint);
        var model = InstructDiffusionModel.Load(checkpoint, tokenizerPath, r.Device, r.DType, config);
        r.Log.LogInformation("loaded instructdiffusion from {File} ({Config}) on {Device} ({DType}) in {Seconds:F1} s", checkpoint,
            config ?? "built-in instruct_diffusion.yaml values", r.Device, r.DType, sw.Elapsed.TotalSeconds);
        return model;
    }
}
