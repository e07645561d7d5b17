using Elect.Imaging;
using Elect.Modeling;
using Elect.Models.Autoencoders;
using Elect.Models.TextEncoders;
using Elect.Models.Unets;
using Elect.Schedulers;
using Elect.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Pipelines.InstructPix2Pix;

/// <summary>
/// The SD 1.x instruction-editing family (timbrooks/instruct-pix2pix, MagicBrush): CLIP text
/// encoder, 8-channel UNet (noisy + image latents), AutoencoderKL, Euler-ancestral sampling.
/// Conventions as diffusers' StableDiffusionInstructPix2PixPipeline: prompt embeddings
/// [text, empty, empty], image latents = posterior mode (unscaled) with zeros for the
/// unconditional branch, final latents decoded after dividing by the VAE scaling factor.
/// MGIE (<see cref="Mgie.MgieModel"/>) is this pipeline with its own UNet weights and MLLM-made prompt embeddings.
/// </summary>
public class InstructPix2PixModel : ClipUnetEditingModel
{
    /// <summary>timbrooks/instruct-pix2pix's <c>scheduler/scheduler_config.json</c> (Euler ancestral), for models built without a checkpoint (the demo, bench).</summary>
    public const string SchedulerConfigJson = """
    {
      "_class_name": "EulerAncestralDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
      "beta_start": 0.00085, "num_train_timesteps": 1000, "prediction_type": "epsilon", "steps_offset": 1,
      "timestep_spacing": "linspace"
    }
    """;

    private readonly string _name;
    private readonly ModelConfig _schedulerConfig;

    protected InstructPix2PixModel(string name, ClipTokenizer? tokenizer, ClipTextModel? textEncoder, UNet2DConditionModel unet,
                                 AutoencoderKL vae, ModelConfig schedulerConfig, Device device, ScalarType dtype)
        : base(tokenizer, textEncoder, unet, vae, device, dtype)
    {
        _name = name;
        _schedulerConfig = schedulerConfig;
        var inChannels = unet.InChannels;
        if (inChannels != 2 * vae.LatentChannels)
            throw new InvalidDataException($"unet/config.json: in_channels {inChannels} is not twice the VAE's latent_channels {vae.LatentChannels} (not an InstructPix2Pix-style UNet)");
    }

    /// <summary>Loads a diffusers StableDiffusionInstructPix2PixPipeline folder.</summary>
    public static InstructPix2PixModel Load(string folder, string name, Device device, ScalarType dtype)
    {
        var tokenizer = ClipTokenizer.FromFolder(Path.Combine(folder, "tokenizer"));
        var text = ClipTextModel.FromPretrained(Path.Combine(folder, "text_encoder"), dtype, device);
        var unet = UNet2DConditionModel.FromPretrained(Path.Combine(folder, "unet"), dtype, device);
        var vae = AutoencoderKL.FromPretrained(Path.Combine(folder, "vae"), dtype, device);
        var sched = ModelConfig.Load(Path.Combine(folder, "scheduler", "scheduler_config.json"));
        // MagicBrush ships a DDIM config; like the reference we always sample with Euler ancestral on the same betas.
        return new InstructPix2PixModel(name, tokenizer, text, unet, vae, sched, device, dtype);
    }

    /// <summary>Assembles a model from components (text encoding optional: see <see cref="PrepareWithEmbeddings"/>).</summary>
    public static InstructPix2PixModel FromComponents(string name, ClipTokenizer? tokenizer, ClipTextModel? textEncoder,
        UNet2DConditionModel unet, AutoencoderKL vae, ModelConfig schedulerConfig, Device device, ScalarType dtype)
        => new(name, tokenizer, textEncoder, unet, vae, schedulerConfig, device, dtype);

    public override string Name => _name;
    public override float DefaultTextGuidance => 7.5f;

    public override IDenoisingScheduler CreateScheduler(int steps)
    {
        var s = EulerAncestralDiscreteScheduler.FromConfig(_schedulerConfig);
        s.SetTimesteps(steps);
        return s;
    }

    /// <summary>Conditioning from given prompt embeddings ([1, L, D] for the instruction and for the empty prompt).</summary>
    public override EditCondition PrepareWithEmbeddings(RgbImage image, Tensor text, Tensor empty)
    {
        using var scope = NewDisposeScope();
        var latents = EncodeImage(image);
        return new EditCondition
        {
            DecodedInput = DecodeRaw(latents),
            Conditioning = new InstructPix2PixConditioning(latents, text.to(DType, Device).clone(), empty.to(DType, Device).clone()),
            LatentHeight = latents.shape[2],
            LatentWidth = latents.shape[3],
        }.Owned();
    }
}
