using System.Diagnostics;
using System.Text.Json;
using Elect.Editing;
using Elect.Imaging;
using Elect.InstructDiffusion;
using Elect.InstructPix2Pix;
using Elect.Modeling;
using Elect.UltraEdit;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using static TorchSharp.torch;

namespace Elect;

/// <summary>
/// The library entry point: loads a diffusers-format checkpoint folder of one of the supported
/// editing families (InstructDiffusion: its single-file checkpoint) and edits images with plain
/// sampling or ELECT seed selection.
/// </summary>
/// <example>
/// <code>
/// using var editor = Editor.Load("checkpoints/instructpix2pix", "instructpix2pix", torch.CUDA, ScalarType.Float16);
/// var input = ImageOps.ImageResize(RgbImage.Load("cat.png"), 512);
/// using var result = editor.Edit(input, "turn the cat into a bear", [1, 2, 3, 4], new EditOptions(), new SelectionOptions());
/// EditOutputs.Write("outputs", "cat", input, result);
/// </code>
/// </example>
public sealed class Editor : IDisposable
{
    /// <summary>Supported <c>--model</c> names.</summary>
    public static readonly IReadOnlyList<string> Families = ["instructpix2pix", "magicbrush", "ultraedit", "instructdiffusion"];

    /// <summary>Where <c>--model instructdiffusion</c> looks for the CLIP tokenizer and text-encoder config by default.</summary>
    public const string DefaultClipFolder = "checkpoints/clip-vit-large-patch14";

    /// <summary>
    /// The default checkpoint of a family: <c>checkpoints/&lt;family&gt;</c>; for instructdiffusion the reference's
    /// <c>checkpoints/v1-5-pruned-emaonly-adaption-task.ckpt</c>, or its <c>.safetensors</c> conversion when that is there.
    /// </summary>
    public static string DefaultCheckpointPath(string family)
    {
        if (family != "instructdiffusion") return Path.Combine("checkpoints", family);
        const string ckpt = "checkpoints/v1-5-pruned-emaonly-adaption-task.ckpt";
        var converted = Path.ChangeExtension(ckpt, ".safetensors");
        return File.Exists(converted) ? converted : ckpt;
    }

    /// <summary>The reference's default text guidance of a family (7.0 UltraEdit, 7.5 the SD 1.x families), without loading it.</summary>
    public static float DefaultTextGuidance(string family) =>
        family.Trim().Equals("ultraedit", StringComparison.OrdinalIgnoreCase) ? 7.0f : 7.5f;

    private readonly ILogger _log;

    public EditingModel Model { get; }
    public ElectEngine Engine { get; }

    private Editor(EditingModel model, ILogger log)
    {
        Model = model;
        _log = log;
        Engine = new ElectEngine(model, log);
    }

    /// <summary>
    /// Loads <paramref name="folder"/> (model_index.json + one folder per component) as
    /// <paramref name="family"/>. Errors name the missing or inconsistent file. For instructdiffusion,
    /// <paramref name="folder"/> is the single-file checkpoint (with an optional same-named .yaml LDM config
    /// beside it) and <paramref name="tokenizerPath"/> the CLIP tokenizer folder (default
    /// <see cref="DefaultClipFolder"/>).
    /// </summary>
    public static Editor Load(string folder, string family, Device device, ScalarType dtype, ILogger? logger = null, string? tokenizerPath = null)
    {
        var log = logger ?? NullLogger.Instance;
        family = family.Trim().ToLowerInvariant();
        if (!Families.Contains(family))
            throw new ArgumentException($"unknown model '{family}' (expected one of: {string.Join(", ", Families)})");
        if (family == "instructdiffusion")
            return LoadInstructDiffusion(folder, tokenizerPath ?? DefaultClipFolder, device, dtype, log);
        if (tokenizerPath is not null)
            throw new ArgumentException($"Editor.Load(tokenizerPath) is only for the instructdiffusion family; {family} checkpoints carry their own tokenizer", nameof(tokenizerPath));
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException($"checkpoint folder not found: {folder} (place a diffusers-format checkpoint there or pass its path as Editor.Load(folder))");
        var indexPath = Path.Combine(folder, "model_index.json");
        if (!File.Exists(indexPath))
            throw new FileNotFoundException($"{folder} is not a diffusers checkpoint folder: missing model_index.json", indexPath);
        var index = ModelConfig.Load(indexPath);
        var className = index.String("_class_name", "");
        bool isSd3 = index.Has("transformer");
        bool isUnet = index.Has("unet");
        if (family == "ultraedit" && !isSd3)
            throw new InvalidDataException($"{indexPath}: '{className}' has no transformer component; the ultraedit family needs an SD3-style (UltraEdit) checkpoint");
        if (family != "ultraedit" && !isUnet)
            throw new InvalidDataException($"{indexPath}: '{className}' has no unet component; the {family} family needs an InstructPix2Pix-style checkpoint");
        TorchRuntime.Initialize(device);
        var sw = Stopwatch.StartNew();
        EditingModel model = family == "ultraedit"
            ? UltraEditModel.Load(folder, device, dtype)
            : InstructPix2PixModel.Load(folder, family, device, dtype);
        log.LogInformation("loaded {Family} from {Folder} on {Device} ({DType}) in {Seconds:F1} s", family, folder, device, dtype, sw.Elapsed.TotalSeconds);
        return new Editor(model, log);
    }

    private static Editor LoadInstructDiffusion(string checkpoint, string tokenizerPath, Device device, ScalarType dtype, ILogger log)
    {
        if (Directory.Exists(checkpoint))
            throw new ArgumentException($"{checkpoint} is a folder; the instructdiffusion family takes the single-file checkpoint (e.g. checkpoints/v1-5-pruned-emaonly-adaption-task.ckpt)");
        if (!Directory.Exists(tokenizerPath))
            throw new DirectoryNotFoundException($"CLIP tokenizer folder not found: {tokenizerPath} (openai/clip-vit-large-patch14's tokenizer files and config.json; pass its path as Editor.Load(tokenizerPath))");
        TorchRuntime.Initialize(device);
        var sw = Stopwatch.StartNew();
        var config = InstructDiffusionModel.DefaultConfigPath(checkpoint);
        var model = InstructDiffusionModel.Load(checkpoint, tokenizerPath, device, dtype, config);
        log.LogInformation("loaded instructdiffusion from {File} ({Config}) on {Device} ({DType}) in {Seconds:F1} s", checkpoint,
            config ?? "built-in instruct_diffusion.yaml values", device, dtype, sw.Elapsed.TotalSeconds);
        return new Editor(model, log);
    }

    /// <summary>
    /// Edits <paramref name="input"/> (already resized, e.g. by <see cref="ImageOps.ImageResize"/>):
    /// ELECT over <paramref name="seeds"/> when <paramref name="selection"/> is given, else plain
    /// sampling of every seed.
    /// </summary>
    public EditResult Edit(RgbImage input, string instruction, IReadOnlyList<long> seeds, EditOptions options,
                           SelectionOptions? selection = null, RgbImage? mask = null,
                           IProgress<EditProgress>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (string.IsNullOrWhiteSpace(instruction))
            throw new ArgumentException("the editing instruction is empty");
        int g = Model.DownsampleFactor;
        if (input.Width % g != 0 || input.Height % g != 0)
            throw new ArgumentException($"image size {input.Width}x{input.Height} is not a multiple of {g} (resize it first)");
        options.Validate();
        selection?.Validate(options.InferenceSteps);
        var sw = Stopwatch.StartNew();
        // temporaries of text/image encoding are owned by this scope; the condition disposes its own tensors
        using var scope = NewDisposeScope();
        using var condition = Model.Prepare(input, instruction, mask);
        ElectEngine.Synchronize(Model.Device);
        var prepare = sw.Elapsed;
        _log.LogDebug("prepared conditioning in {Seconds:F2} s", prepare.TotalSeconds);
        return Engine.Run(condition, seeds, options, selection, progress, cancel, prepare);
    }

    public void Dispose() => Model.Dispose();
}
