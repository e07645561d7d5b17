using System.Diagnostics;
using Elect.Imaging;
using Elect.Pipelines;
using Elect.Selection;
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
    /// <summary>Supported <c>--model</c> names (the <see cref="ModelFamilies"/> registry's).</summary>
    public static IReadOnlyList<string> Families => ModelFamilies.Names;

    /// <summary>Where the instructdiffusion family looks for the CLIP tokenizer and text-encoder config by default.</summary>
    public const string DefaultClipFolder = ModelFamilies.DefaultClipFolder;

    /// <summary>
    /// The default checkpoint of a family: <c>checkpoints/&lt;family&gt;</c>; for instructdiffusion the reference's
    /// <c>checkpoints/v1-5-pruned-emaonly-adaption-task.ckpt</c>, or its <c>.safetensors</c> conversion when that is there.
    /// </summary>
    public static string DefaultCheckpointPath(string family) => ModelFamilies.Get(family).DefaultCheckpointPath();

    /// <summary>The reference's default text guidance of a family (7.0 UltraEdit, 7.5 the SD 1.x families), without loading it.</summary>
    public static float DefaultTextGuidance(string family) => ModelFamilies.Get(family).DefaultTextGuidance;

    private readonly ILogger _log;

    /// <summary>The registry entry the model was loaded as.</summary>
    public ModelFamily Family { get; }
    public EditingModel Model { get; }
    public ElectEngine Engine { get; }

    private Editor(ModelFamily family, EditingModel model, ILogger log)
    {
        Family = family;
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
        var entry = ModelFamilies.Get(family);
        var model = entry.Load(entry.Request(folder, tokenizerPath, device, dtype, log));
        return new Editor(entry, model, log);
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
